//! The TCP front end (`--tcp-address`): accept loop on tokio-uring, one connection task each.
//! `tokio_uring` is imported here and in the storage IO layer only.

pub mod compress;
pub mod conn;
mod exec;

use crate::broker::Broker;
use std::rc::Rc;
use tokio_uring::net::TcpListener;

/// Accepts connections until `shutdown` resolves; each connection runs on its own task.
pub async fn serve(
    listener: TcpListener,
    broker: Rc<Broker>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    tokio::task::spawn_local(conn::handle(stream, remote, Rc::clone(&broker)));
                }
                Err(e) => {
                    // EMFILE and friends: say so and keep serving the clients we have.
                    tracing::error!("TCP: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}
