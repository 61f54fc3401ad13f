//! Changing where a proxy forwards: pending proxies, restarted targets and
//! unreachable ones.

mod common;

use std::time::Duration;

use common::*;
use meridian_netem::Proxy;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

const PROMPTLY: Duration = Duration::from_secs(1);

async fn greeting(stream: &mut TcpStream) -> u8 {
    let mut name = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut name))
        .await
        .expect("greeting within 5 s")
        .expect("read greeting");
    name[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_change_redirects_new_connections_and_keeps_old_ones() {
    let (a, b) = (greeter_server(b'a').await, greeter_server(b'b').await);
    let proxy = Proxy::start(any_port(), a).await.unwrap();
    let mut old = connect(proxy.addr()).await;
    assert_eq!(greeting(&mut old).await, b'a');

    proxy.set_target(b);
    assert_eq!(proxy.control().target(), Some(b));
    let mut new = connect(proxy.addr()).await;
    assert_eq!(greeting(&mut new).await, b'b');
    round_trip(&mut old, b"still to a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_proxy_closes_connections_until_its_target_is_set() {
    let proxy = Proxy::start_pending(any_port()).await.unwrap();
    assert_eq!(proxy.control().target(), None);
    let mut early = connect(proxy.addr()).await;
    assert!(closes_within(&mut early, PROMPTLY).await);
    assert_eq!(proxy.stats().connections_refused, 1);

    proxy.set_target(greeter_server(b'z').await);
    let mut late = connect(proxy.addr()).await;
    assert_eq!(greeting(&mut late).await, b'z');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_closes_the_dialers_connection() {
    let free_port = {
        let listener = TcpListener::bind(any_port()).await.unwrap();
        listener.local_addr().unwrap()
    };
    let proxy = Proxy::start(any_port(), free_port).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    assert!(closes_within(&mut client, PROMPTLY).await);
    assert!(eventually(PROMPTLY, || proxy.stats().connections_refused == 1).await);
    assert_eq!(proxy.stats().connections_active, 0);
}
