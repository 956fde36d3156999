//! The TCP front end (`--tcp-address`): accept loop on tokio-uring, one connection task each.
//! `tokio_uring` is imported here, in [`transport`] and in the storage IO layer only.
//!
//! - [`conn`]: the connection loop (deadlines, bounded work per turn, the writer task).
//! - [`transport`]: bytes in and out through the socket and the compression layer.
//! - [`compress`]: the snappy and deflate codecs. `exec`: the commands.
//!
//! Connections are admitted against the descriptor budget ([`crate::fds::Admission`]).

pub mod compress;
pub mod conn;
mod exec;
pub mod transport;

use crate::broker::Broker;
use crate::fds::Admission;
use std::rc::Rc;
use tokio_uring::net::TcpListener;

/// Accepts connections until `shutdown` resolves; each connection runs on its own task.
pub async fn serve(
    listener: TcpListener,
    broker: Rc<Broker>,
    admission: Rc<Admission>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                let Some(admitted) = admission.admit() else {
                    close_now(&stream);
                    continue;
                };
                let broker = Rc::clone(&broker);
                tokio::task::spawn_local(async move {
                    conn::handle(stream, remote, broker).await;
                    drop(admitted);
                });
            }
            Err(e) => {
                admission
                    .refuse_one(&e, || async {
                        let (stream, _) = listener.accept().await?;
                        close_now(&stream);
                        Ok(())
                    })
                    .await;
            }
        }
    }
}

/// Ends a connection we will not serve (its descriptor is closed when it is dropped).
fn close_now(stream: &tokio_uring::net::TcpStream) {
    if let Err(e) = stream.shutdown(std::net::Shutdown::Both) {
        tracing::debug!("shutdown: {e}");
    }
}
