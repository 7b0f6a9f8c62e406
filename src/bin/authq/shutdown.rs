//! The shutdown signal `serve` and `events` wait for. A leaf: it imports no other module of the
//! binary.

/// Listens for SIGINT (Ctrl-C) and SIGTERM from this call on; the future completes on the
/// first. Call it before the worker starts: a signal that arrives between the moment the pool
/// answers requests and the first poll of a lazily installed handler would kill the process
/// with the default action, skipping the graceful shutdown (seen once in the bench smoke test
/// under CPU load).
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            if term.is_none() && int.is_none() {
                let _ = tokio::signal::ctrl_c().await;
            } else {
                tokio::select! {
                    () = next(&mut term) => {}
                    () = next(&mut int) => {}
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
    }
}
