//! A collector on this host is reached directly even when the environment names a proxy
//! (`HTTPS_PROXY` is common on corporate machines): a proxy would reach its own loopback,
//! not ours, and `cargo xtask run --demo`'s agent could not enroll. The one test of this
//! binary: the variable is process-wide.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

#[test]
fn a_loopback_collector_is_reached_directly_with_a_proxy_in_the_environment() {
    // A proxy that refuses every connection (port 9, discard, nothing listens).
    // SAFETY: set before any other thread of this process exists (the runtime is built
    // below), and this binary holds this one test.
    unsafe {
        std::env::set_var("HTTPS_PROXY", "http://127.0.0.1:9");
        std::env::set_var("HTTP_PROXY", "http://127.0.0.1:9");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let srv = common::start_server(true, |_| {}).await;
        assert!(srv.url.contains("localhost"), "{}", srv.url);
        let health = srv.client(None).healthz().await.unwrap();
        assert_eq!(health["status"], "ok", "{health}");
        let admin = srv.client(Some(&srv.admin));
        admin.agents().await.unwrap();
    });
}
