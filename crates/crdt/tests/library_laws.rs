//! Merge laws of the replicated FUNCTION libraries (`Libraries`): replicas
//! that exchange ops in any causal order converge, a fresh replica replaying
//! them reaches the same state, state merge is commutative, associative and
//! idempotent and agrees with op replay; last writer wins by tag, and a
//! delete or flush removes only the versions it observed.

use meridian_crdt::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Replica {
    region: RegionId,
    clock: HlcClock,
    seq: u64,
    vv: VersionVector,
    libs: Libraries,
    log: Vec<Op>,
}

impl Replica {
    fn new(name: &str) -> Replica {
        Replica {
            region: RegionId::new(name).unwrap(),
            clock: HlcClock::new(u64::MAX),
            seq: 0,
            vv: VersionVector::new(),
            libs: Libraries::new(),
            log: Vec::new(),
        }
    }

    fn apply(&mut self, op: &Op) -> bool {
        if self.vv.covers(op.dot()) {
            return false;
        }
        assert_eq!(self.vv.get(op.dot().region()), op.dot().seq() - 1);
        assert!(self.vv.dominates(&op.ctx), "causal delivery");
        let _ = self.clock.observe(op.tag.hlc, 0);
        apply_to(&mut self.libs, op);
        self.vv.observe(op.dot());
        self.log.push(op.clone());
        true
    }

    /// A FUNCTION command as the store makes it: LOAD (0), DELETE of a
    /// library held here (1), FLUSH of every library held here (2).
    fn write(&mut self, verb: u8, name: u8, wall_ms: u64) {
        let name = Blob::from(format!("lib{}", name % 3).as_str());
        let effects: Vec<Effect> = match verb % 3 {
            0 => vec![Effect {
                key: name,
                kind: EffectKind::LibrarySet {
                    code: Blob::from(format!("code-{}-{}", self.region, self.seq + 1).as_str()),
                },
            }],
            1 if self.libs.get(&name).is_some() => vec![Effect {
                key: name,
                kind: EffectKind::LibraryDel,
            }],
            2 => self
                .libs
                .iter()
                .map(|(n, _)| Effect {
                    key: n.clone(),
                    kind: EffectKind::LibraryDel,
                })
                .collect(),
            _ => Vec::new(),
        };
        if effects.is_empty() {
            return;
        }
        self.seq += 1;
        let op = Op {
            tag: Tag {
                hlc: self.clock.now(wall_ms),
                dot: Dot::new(self.region, self.seq),
            },
            ctx: self.vv.clone(),
            effects,
        };
        assert!(self.apply(&op));
    }

    fn sync_from(&mut self, from: &Replica) {
        for op in &from.log {
            if self.vv.dominates(&op.ctx) || self.vv.covers(op.dot()) {
                self.apply(op);
            }
        }
    }
}

fn apply_to(libs: &mut Libraries, op: &Op) {
    let ctx = op.context();
    let mut conflicts = Vec::new();
    for e in &op.effects {
        match &e.kind {
            EffectKind::LibrarySet { code } => libs.set(&e.key, code, op.tag, &ctx, &mut conflicts),
            EffectKind::LibraryDel => libs.del(&e.key, &ctx),
            other => panic!("not a library effect: {other:?}"),
        }
    }
}

#[derive(Clone, Debug)]
struct Action {
    replica: usize,
    verb: u8,
    name: u8,
    wall_ms: u64,
    /// Pull from another replica before writing.
    sync: Option<usize>,
}

fn action() -> impl Strategy<Value = Action> {
    (
        0..3usize,
        any::<u8>(),
        any::<u8>(),
        0..50u64,
        prop::option::of(0..3usize),
    )
        .prop_map(|(replica, verb, name, wall_ms, sync)| Action {
            replica,
            verb,
            name,
            wall_ms,
            sync,
        })
}

fn run(actions: &[Action]) -> Vec<Replica> {
    let mut rs = vec![Replica::new("ra"), Replica::new("rb"), Replica::new("rc")];
    for a in actions {
        if let Some(s) = a.sync.filter(|s| *s != a.replica) {
            let from = rs[s].clone();
            rs[a.replica].sync_from(&from);
        }
        rs[a.replica].write(a.verb, a.name, a.wall_ms);
    }
    rs
}

fn sync_all(rs: &mut [Replica]) {
    for _ in 0..rs.len() {
        for i in 0..rs.len() {
            for j in 0..rs.len() {
                if i != j {
                    let from = rs[j].clone();
                    rs[i].sync_from(&from);
                }
            }
        }
    }
}

fn merged(
    a: (&VersionVector, &Libraries),
    b: (&VersionVector, &Libraries),
) -> (VersionVector, Libraries) {
    let mut libs = a.1.clone();
    libs.join(a.0, b.1, b.0, &mut Vec::new());
    let mut vv = a.0.clone();
    vv.join(b.0);
    (vv, libs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_after_exchanging_all_ops(actions in prop::collection::vec(action(), 1..40)) {
        let mut rs = run(&actions);
        sync_all(&mut rs);
        prop_assert_eq!(&rs[0].libs, &rs[1].libs);
        prop_assert_eq!(&rs[1].libs, &rs[2].libs);
        // A fresh replica replaying any replica's log (a causal order)
        // reaches the same state.
        for r in &rs {
            let mut fresh = Replica::new("rz");
            for op in &r.log {
                fresh.apply(op);
            }
            prop_assert_eq!(&fresh.libs, &rs[0].libs);
        }
    }

    #[test]
    fn state_merge_is_commutative_associative_idempotent_and_agrees_with_replay(
        actions in prop::collection::vec(action(), 1..40)
    ) {
        let rs = run(&actions);
        let s = |r: &Replica| (r.vv.clone(), r.libs.clone());
        let (a, b, c) = (s(&rs[0]), s(&rs[1]), s(&rs[2]));
        let ab = merged((&a.0, &a.1), (&b.0, &b.1));
        let ba = merged((&b.0, &b.1), (&a.0, &a.1));
        prop_assert_eq!(&ab.1, &ba.1);
        let aa = merged((&a.0, &a.1), (&a.0, &a.1));
        prop_assert_eq!(&aa.1, &a.1);
        let ab_c = merged((&ab.0, &ab.1), (&c.0, &c.1));
        let bc = merged((&b.0, &b.1), (&c.0, &c.1));
        let a_bc = merged((&a.0, &a.1), (&bc.0, &bc.1));
        prop_assert_eq!(&ab_c.1, &a_bc.1);
        // Agrees with exchanging every op.
        let mut all = rs.clone();
        sync_all(&mut all);
        prop_assert_eq!(&ab_c.1, &all[0].libs);
    }
}

fn ctx_tag(region: &str, seq: u64, wall: u64) -> Tag {
    Tag {
        hlc: Hlc::new(wall, 0),
        dot: Dot::new(RegionId::new(region).unwrap(), seq),
    }
}

#[test]
fn concurrent_loads_of_one_name_show_the_larger_tag_everywhere() {
    let mut a = Replica::new("ra");
    let mut b = Replica::new("rb");
    a.write(0, 0, 10);
    b.write(0, 0, 20);
    let (a0, b0) = (a.clone(), b.clone());
    a.sync_from(&b0);
    b.sync_from(&a0);
    assert_eq!(a.libs, b.libs);
    let shown = a.libs.get(b"lib0").unwrap();
    assert_eq!(shown.tag.dot.region(), RegionId::new("rb").unwrap());
    assert_eq!(
        a.libs.versions(b"lib0").len(),
        2,
        "the loser stays a sibling"
    );
    // A later load that observed both replaces both.
    a.write(0, 0, 30);
    assert_eq!(a.libs.versions(b"lib0").len(), 1);
}

#[test]
fn a_flush_removes_only_what_it_observed() {
    let mut a = Replica::new("ra");
    let mut b = Replica::new("rb");
    a.write(0, 0, 10); // lib0 at A
    let a0 = a.clone();
    b.sync_from(&a0);
    a.write(0, 1, 11); // lib1 at A, not yet seen by B
    b.write(2, 0, 50); // FLUSH at B: saw lib0 only, with a later clock
    let (a1, b1) = (a.clone(), b.clone());
    a.sync_from(&b1);
    b.sync_from(&a1);
    assert_eq!(a.libs, b.libs);
    assert!(a.libs.get(b"lib0").is_none());
    assert!(
        a.libs.get(b"lib1").is_some(),
        "a concurrent load survives a flush"
    );
}

#[test]
fn a_merge_reports_the_loser_of_concurrent_versions() {
    let mut a = Libraries::new();
    let mut b = Libraries::new();
    let empty = VersionVector::new();
    let ta = ctx_tag("ra", 1, 10);
    let tb = ctx_tag("rb", 1, 20);
    a.set(
        b"l",
        &Blob::from("a"),
        ta,
        &OpCtx {
            tag: ta,
            vv: &empty,
        },
        &mut vec![],
    );
    b.set(
        b"l",
        &Blob::from("b"),
        tb,
        &OpCtx {
            tag: tb,
            vv: &empty,
        },
        &mut vec![],
    );
    let mut va = VersionVector::new();
    va.observe(ta.dot);
    let mut vb = VersionVector::new();
    vb.observe(tb.dot);
    let mut found = Vec::new();
    assert!(a.join(&va, &b, &vb, &mut found));
    assert_eq!(found.len(), 1);
    assert_eq!(&found[0].loser_value[..], b"a");
    assert_eq!(&found[0].winner_value[..], b"b");
    assert_eq!(found[0].rule, Rule::Library);
    // Joining again changes nothing and reports nothing.
    let mut vab = va.clone();
    vab.join(&vb);
    let mut again = Vec::new();
    assert!(!a.join(&vab, &b, &vb, &mut again));
    assert!(again.is_empty());
}
