//! The mesh of directed proxies between regions, with local greeter servers
//! standing in for the regions' replication ports.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use meridian_netem::{LinkConditions, Mesh, MeshError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const PROMPTLY: Duration = Duration::from_secs(1);
const REGIONS: [&str; 3] = ["a", "b", "c"];

/// A mesh over three greeters, each answering with its region's first byte.
async fn three_regions(seed: u64) -> Mesh {
    let mut addrs = Vec::new();
    for region in REGIONS {
        addrs.push((region, greeter_server(region.as_bytes()[0]).await));
    }
    Mesh::start_with_addrs(addrs, seed).await.unwrap()
}

/// Dials `to` the way region `from` would, through the address its
/// `--peer` list names.
async fn dial(mesh: &Mesh, from: &str, to: &str) -> TcpStream {
    let peers: BTreeMap<String, SocketAddr> = mesh.peers(from).unwrap().into_iter().collect();
    connect(peers[to]).await
}

async fn reaches(stream: &mut TcpStream, region: &str) -> bool {
    let mut name = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut name)).await,
        Ok(Ok(_)) if name[0] == region.as_bytes()[0]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_args_point_each_region_at_its_proxies_once_addresses_are_known() {
    let mesh = Mesh::start(REGIONS, 1).await.unwrap();
    let args = mesh.peer_args("a").unwrap();
    assert_eq!(args.len(), 4);
    assert_eq!(args[0], "--peer");
    assert!(args[1].starts_with("b=127.0.0.1:"), "{args:?}");
    assert_eq!(args[2], "--peer");
    assert!(args[3].starts_with("c=127.0.0.1:"), "{args:?}");
    let ports: std::collections::BTreeSet<String> = REGIONS
        .iter()
        .flat_map(|r| mesh.peer_args(r).unwrap())
        .filter(|a| a != "--peer")
        .collect();
    assert_eq!(ports.len(), 6, "every directed link has its own proxy");

    // Before b has printed its address, a's dial to b is closed at once.
    let mut early = dial(&mesh, "a", "b").await;
    assert!(closes_within(&mut early, PROMPTLY).await);
    mesh.set_repl_addr("b", greeter_server(b'b').await).unwrap();
    let mut late = dial(&mesh, "a", "b").await;
    assert!(reaches(&mut late, "b").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_cuts_every_link_of_a_region_and_heal_all_restores_them() {
    let mesh = three_regions(2).await;
    let mut open = BTreeMap::new();
    for from in REGIONS {
        for to in REGIONS.iter().filter(|to| **to != from) {
            let mut stream = dial(&mesh, from, to).await;
            assert!(reaches(&mut stream, to).await);
            open.insert((from, *to), stream);
        }
    }
    mesh.partition("a").unwrap();
    for ((from, to), stream) in open.iter_mut() {
        let involves_a = *from == "a" || *to == "a";
        let closed = closes_within(stream, Duration::from_millis(500)).await;
        assert_eq!(closed, involves_a, "link {from}->{to}");
    }
    assert_eq!(mesh.link("b", "a").unwrap().stats().connections_cut, 1);
    assert_eq!(mesh.link("b", "c").unwrap().stats().connections_cut, 0);

    mesh.heal_all();
    let mut redial = dial(&mesh, "c", "a").await;
    assert!(reaches(&mut redial, "a").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_takes_both_directions_down_and_heal_all_keeps_the_wan_delay() {
    let mesh = three_regions(3).await;
    mesh.set_all(LinkConditions::wan(40)).unwrap();
    mesh.cut("a", "b").unwrap();
    for (from, to) in [("a", "b"), ("b", "a")] {
        let mut stream = dial(&mesh, from, to).await;
        assert!(closes_within(&mut stream, PROMPTLY).await, "{from}->{to}");
    }
    let mut untouched = dial(&mesh, "a", "c").await;
    assert!(reaches(&mut untouched, "c").await);

    mesh.heal_all();
    assert_eq!(
        mesh.link("a", "b").unwrap().conditions(),
        LinkConditions::wan(40)
    );
    let mut healed = dial(&mesh, "a", "b").await;
    assert!(reaches(&mut healed, "b").await);
    let rtt = round_trip(&mut healed, b"ping").await;
    assert!(
        rtt >= Duration::from_millis(80),
        "rtt {rtt:?} lost the delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_rejects_invalid_duplicate_and_unknown_regions() {
    assert!(matches!(
        Mesh::start(["a", "B"], 0).await,
        Err(MeshError::InvalidRegionId(id)) if id == "B"
    ));
    assert!(matches!(
        Mesh::start(["a", "b", "a"], 0).await,
        Err(MeshError::DuplicateRegion(id)) if id == "a"
    ));
    let mesh = Mesh::start(["a", "b"], 0).await.unwrap();
    assert!(matches!(
        mesh.link("a", "a"),
        Err(MeshError::UnknownLink { .. })
    ));
    assert!(matches!(
        mesh.partition("x"),
        Err(MeshError::UnknownRegion(_))
    ));
    assert!(matches!(
        mesh.cut("a", "x"),
        Err(MeshError::UnknownLink { .. })
    ));
    assert!(matches!(
        mesh.set_all(LinkConditions::IDEAL.with_loss(-0.1)),
        Err(MeshError::Conditions(_))
    ));
}
