//! The other shards as a connection sees them ([`Peers`], implemented by [`Link`]): forwarded
//! publish batches, connections moving to the shard of their `SUB`, connections dealt from the
//! unix socket. What crosses is a batch or a whole connection, carried as the connection layer
//! built it: nothing here looks inside.

use super::{forward, Link};
use crate::broker::Place;
use crate::connection::admission::Admitted;
use crate::connection::forward::{Item, Outcome};
use crate::connection::handoff::{self, Handoff};
use crate::connection::transport::MovingSocket;
use crate::connection::{accept, LocalFuture, Peers};
use tokio::sync::oneshot;

impl Peers for Link {
    fn place(&self) -> Place {
        self.place
    }

    fn forward(
        &self,
        shard: usize,
        items: Vec<Item>,
        bytes: usize,
        reply: oneshot::Sender<Vec<Outcome>>,
    ) -> LocalFuture<'_, ()> {
        Box::pin(async move {
            // A shard that is gone drops the job, and with it `reply`.
            let _gone = self
                .send_bytes(shard, bytes, move |s| forward::accept(s, items, reply))
                .await;
        })
    }

    fn hand_off(&self, shard: usize, connection: Handoff) -> LocalFuture<'_, ()> {
        Box::pin(async move {
            // A shard that is gone drops the job: the connection closes with it.
            let _gone = self
                .send(
                    shard,
                    Box::new(move |s| handoff::resume(&s.frontend, connection)),
                )
                .await;
        })
    }

    fn deal(&self, shard: usize, socket: MovingSocket, admitted: Admitted) -> LocalFuture<'_, ()> {
        Box::pin(async move {
            // A shard that is gone drops the job: the connection closes with it.
            let _gone = self
                .send(
                    shard,
                    Box::new(move |s| accept::serve_dealt(&s.frontend, socket, admitted)),
                )
                .await;
        })
    }
}
