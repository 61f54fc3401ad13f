//! What readers see of a string written in part by concurrent ops: the
//! merge laws (`merge_laws.rs`) prove every order converges; these pin down
//! what it converges to.

use meridian_crdt::*;

/// An op of one effect on key `k` by `region`, at `wall_ms`, having
/// observed `ctx`.
fn op(region: &str, seq: u64, wall_ms: u64, ctx: &VersionVector, kind: EffectKind) -> Op {
    let region = RegionId::new(region).unwrap();
    Op {
        tag: Tag {
            hlc: Hlc::new(wall_ms, 0),
            dot: Dot::new(region, seq),
        },
        ctx: ctx.clone(),
        effects: vec![Effect {
            key: Blob::from("k"),
            kind,
        }],
    }
}

fn bit(offset: u64, on: bool) -> EffectKind {
    EffectKind::StrPatch {
        patches: vec![Patch::Bits {
            offset,
            width: 1,
            value: u64::from(on),
        }],
        fold: None,
        obs: KeyObs::default(),
    }
}

fn set(value: &str) -> EffectKind {
    EffectKind::StrSet {
        value: Blob::from(value),
        keep_ttl: false,
        obs: KeyObs::default(),
    }
}

/// Applies `ops` in order to a new key; the bytes readers see and the
/// conflicts reported.
fn apply(ops: &[&Op]) -> (Vec<u8>, Vec<Conflict>) {
    let mut e = Entry::new(Kind::String);
    let mut conflicts = Vec::new();
    for op in ops {
        for eff in &op.effects {
            e.apply(&eff.key, &eff.kind, &op.context(), &mut conflicts);
        }
    }
    let Value::Str(r) = e.value() else {
        panic!("not a string")
    };
    (r.render().into_owned(), conflicts)
}

#[test]
fn concurrent_bits_of_one_key_all_survive() {
    let none = VersionVector::new();
    let a = op("pa", 1, 10, &none, bit(1, true));
    let b = op("pb", 1, 11, &none, bit(9, true));
    for order in [[&a, &b], [&b, &a]] {
        let (bytes, conflicts) = apply(&order);
        assert_eq!(bytes, vec![0x40, 0x40]);
        assert!(conflicts.is_empty());
    }
}

#[test]
fn one_bit_written_concurrently_goes_to_the_later_write_and_is_journaled() {
    let none = VersionVector::new();
    let on = op("pa", 1, 10, &none, bit(3, true));
    let off = op("pb", 1, 20, &none, bit(3, false));
    for order in [[&on, &off], [&off, &on]] {
        let (bytes, conflicts) = apply(&order);
        assert_eq!(bytes, vec![0x00]);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].winner, off.tag);
        assert_eq!(conflicts[0].loser, on.tag);
    }
}

#[test]
fn a_bit_written_after_a_concurrent_whole_write_shows_over_it() {
    let none = VersionVector::new();
    let whole = op("pa", 1, 10, &none, set("\x00\x00"));
    let later_bit = op("pb", 1, 20, &none, bit(0, true));
    for order in [[&whole, &later_bit], [&later_bit, &whole]] {
        assert_eq!(apply(&order).0, vec![0x80, 0x00]);
    }
    // A whole write later than the bit hides it, and the bit is journaled.
    let later_whole = op("pa", 1, 30, &none, set("\x00\x00"));
    for order in [[&later_whole, &later_bit], [&later_bit, &later_whole]] {
        let (bytes, conflicts) = apply(&order);
        assert_eq!(bytes, vec![0x00, 0x00]);
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].loser, later_bit.tag);
        assert_eq!(conflicts[0].winner, later_whole.tag);
    }
}

#[test]
fn a_write_that_observed_a_patch_drops_it() {
    let none = VersionVector::new();
    let a = op("pa", 1, 10, &none, bit(7, true));
    let mut seen = VersionVector::new();
    seen.observe(a.dot());
    let fold = op(
        "pb",
        1,
        20,
        &seen,
        EffectKind::StrPatch {
            patches: Vec::new(),
            fold: Some(Blob::from("\x01")),
            obs: KeyObs::default(),
        },
    );
    let mut e = Entry::new(Kind::String);
    let mut conflicts = Vec::new();
    for op in [&a, &fold] {
        for eff in &op.effects {
            e.apply(&eff.key, &eff.kind, &op.context(), &mut conflicts);
        }
    }
    let Value::Str(r) = e.value() else {
        panic!("not a string")
    };
    assert_eq!(r.patch_count(), 0);
    assert_eq!(&r.render()[..], b"\x01");
}
