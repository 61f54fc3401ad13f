//! Partitions, one-way cuts, healing, shutdown and the counters that record
//! them.

mod common;

use std::time::Duration;

use common::*;
use meridian_netem::{ConditionsError, Direction, LinkConditions, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROMPTLY: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_closes_existing_connections_and_refuses_new_ones() {
    let proxy = Proxy::start(any_port(), echo_server().await).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"before").await;

    proxy.control().set(LinkConditions::partitioned()).unwrap();
    assert!(
        closes_within(&mut client, PROMPTLY).await,
        "existing connection left open"
    );
    let mut redial = connect(proxy.addr()).await;
    assert!(
        closes_within(&mut redial, PROMPTLY).await,
        "new connection carried"
    );

    assert!(eventually(PROMPTLY, || proxy.stats().connections_active == 0).await);
    let stats = proxy.stats();
    assert_eq!(stats.connections_accepted, 2);
    assert_eq!(stats.connections_cut, 1);
    assert_eq!(stats.connections_refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_restores_connectivity_and_keeps_the_delay() {
    let proxy = Proxy::start(any_port(), echo_server().await).await.unwrap();
    proxy.control().set(LinkConditions::wan(50)).unwrap();
    proxy.control().partition();
    let mut refused = connect(proxy.addr()).await;
    assert!(closes_within(&mut refused, PROMPTLY).await);

    proxy.control().heal();
    assert_eq!(proxy.control().conditions(), LinkConditions::wan(50));
    let mut client = connect(proxy.addr()).await;
    let rtt = round_trip(&mut client, b"after").await;
    assert!(
        rtt >= Duration::from_millis(100),
        "rtt {rtt:?} lost the delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_cut_closes_that_link_and_leaves_the_reverse_link_working() {
    // Regions a and b, each an echo server; a dials b through a_to_b and b
    // dials a through b_to_a.
    let (a, b) = (echo_server().await, echo_server().await);
    let a_to_b = Proxy::start(any_port(), b).await.unwrap();
    let b_to_a = Proxy::start(any_port(), a).await.unwrap();
    let mut a_dials_b = connect(a_to_b.addr()).await;
    let mut b_dials_a = connect(b_to_a.addr()).await;
    round_trip(&mut a_dials_b, b"ab").await;
    round_trip(&mut b_dials_a, b"ba").await;

    for (forward_up, backward_up) in [(false, true), (true, false)] {
        a_to_b
            .control()
            .set(LinkConditions::one_way(forward_up, backward_up))
            .unwrap();
        assert!(
            closes_within(&mut a_dials_b, PROMPTLY).await,
            "one direction down must still close the TCP connection"
        );
        let mut redial = connect(a_to_b.addr()).await;
        assert!(closes_within(&mut redial, PROMPTLY).await);
        round_trip(&mut b_dials_a, b"still up").await;

        a_to_b.control().set(LinkConditions::IDEAL).unwrap();
        a_dials_b = connect(a_to_b.addr()).await;
        round_trip(&mut a_dials_b, b"healed").await;
    }
    assert_eq!(a_to_b.stats().connections_cut, 2);
    assert_eq!(b_to_a.stats().connections_cut, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_queued_at_a_cut_are_discarded_not_delivered() {
    let (sink, mut arrivals) = sink_server().await;
    let proxy = Proxy::start(any_port(), sink).await.unwrap();
    proxy
        .control()
        .set(LinkConditions {
            forward: Direction::delayed(2_000),
            backward: Direction::IDEAL,
        })
        .unwrap();
    let mut client = connect(proxy.addr()).await;
    client.write_all(&[1u8; 1_000]).await.unwrap();
    assert!(eventually(PROMPTLY, || proxy.stats().bytes_queued_forward == 1_000).await);

    proxy.control().partition();
    assert!(closes_within(&mut client, PROMPTLY).await);
    assert!(eventually(PROMPTLY, || proxy.stats().connections_cut == 1).await);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(arrivals.try_recv().is_err(), "cut bytes were delivered");
    let stats = proxy.stats();
    assert_eq!(stats.bytes_forward, 0);
    assert_eq!(stats.bytes_discarded, 1_000);
    assert_eq!(stats.bytes_queued_forward, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_is_forwarded_after_the_queued_bytes() {
    let proxy = Proxy::start(any_port(), echo_server().await).await.unwrap();
    proxy.control().set(LinkConditions::wan(50)).unwrap();
    let mut client = connect(proxy.addr()).await;
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    client.write_all(&payload).await.unwrap();
    client.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut echoed))
        .await
        .expect("echo finished")
        .unwrap();
    assert_eq!(echoed, payload);
    assert!(eventually(PROMPTLY, || proxy.stats().connections_active == 0).await);
    assert_eq!(proxy.stats().connections_cut, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_closes_its_connections_and_listener() {
    let proxy = Proxy::start(any_port(), echo_server().await).await.unwrap();
    let addr = proxy.addr();
    let mut client = connect(addr).await;
    round_trip(&mut client, b"x").await;
    drop(proxy);
    assert!(closes_within(&mut client, PROMPTLY).await);
    let mut listener_gone = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            listener_gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(listener_gone, "proxy still accepting after drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_track_bytes_and_connections() {
    let proxy = Proxy::start(any_port(), echo_server().await).await.unwrap();
    let mut first = connect(proxy.addr()).await;
    let mut second = connect(proxy.addr()).await;
    round_trip(&mut first, &[1u8; 1_000]).await;
    round_trip(&mut second, &[2u8; 500]).await;
    let stats = proxy.stats();
    assert_eq!(stats.bytes_forward, 1_500);
    assert_eq!(stats.bytes_backward, 1_500);
    assert_eq!(stats.connections_accepted, 2);
    assert_eq!(stats.connections_active, 2);
    assert_eq!(stats.chunks_lost, 0);

    drop(first);
    assert!(eventually(PROMPTLY, || proxy.stats().connections_active == 1).await);
    proxy.control().partition();
    assert!(closes_within(&mut second, PROMPTLY).await);
    let mut refused = connect(proxy.addr()).await;
    assert!(closes_within(&mut refused, PROMPTLY).await);
    assert!(eventually(PROMPTLY, || proxy.stats().connections_active == 0).await);
    let stats = proxy.stats();
    assert_eq!(stats.connections_accepted, 3);
    assert_eq!(stats.connections_cut, 1);
    assert_eq!(stats.connections_refused, 1);
    assert_eq!(stats.bytes_discarded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_conditions_are_rejected_and_the_old_ones_kept() {
    let proxy = Proxy::start(any_port(), echo_server().await).await.unwrap();
    let control = proxy.control().clone();
    control.set(LinkConditions::wan(20)).unwrap();
    let err = control
        .set(LinkConditions::wan(20).with_loss(1.5))
        .unwrap_err();
    assert!(matches!(err, ConditionsError::LossOutOfRange { .. }));
    let err = control
        .update(|c| c.backward.bandwidth_bytes_per_s = Some(0))
        .unwrap_err();
    assert_eq!(
        err,
        ConditionsError::ZeroBandwidth {
            direction: "backward"
        }
    );
    assert_eq!(control.conditions(), LinkConditions::wan(20));
}
