//! What readers see of a string written in part by concurrent ops: the
//! merge laws (`merge_laws.rs`) prove every order converges; these pin down
//! what it converges to.

use meridian_crdt::patch;
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

/// BITFIELD INCRBY under OVERFLOW WRAP of the field `offset`/`width`, in
/// the counter incarnation `start`.
fn incr(offset: u64, width: u8, start: u64, delta: u64) -> EffectKind {
    EffectKind::StrPatch {
        patches: vec![Patch::Incr {
            offset,
            width,
            start,
            delta,
        }],
        fold: None,
        obs: KeyObs::default(),
    }
}

/// A write of a field's bits (BITFIELD SET, or SAT/FAIL INCRBY) that
/// observed `obs`.
fn set_field(offset: u64, width: u8, value: u64, obs: KeyObs) -> EffectKind {
    EffectKind::StrPatch {
        patches: vec![Patch::Bits {
            offset,
            width,
            value,
        }],
        fold: None,
        obs,
    }
}

fn vv(dots: &[&Op]) -> VersionVector {
    let mut v = VersionVector::new();
    for op in dots {
        v.observe(op.dot());
    }
    v
}

/// Applies `ops` in order to a new key: the entry and the conflicts.
fn apply_entry(ops: &[&Op]) -> (Entry, Vec<Conflict>) {
    let mut e = Entry::new(Kind::String);
    let mut conflicts = Vec::new();
    for op in ops {
        for eff in &op.effects {
            e.apply(&eff.key, &eff.kind, &op.context(), &mut conflicts);
        }
    }
    (e, conflicts)
}

/// Every causal order of `ops` (`before[i]` lists the ops op i depends
/// on) gives `bytes` and journals `journaled` entries.
fn in_every_order(ops: &[&Op], bytes: &[u8], journaled: usize) -> Vec<Vec<Conflict>> {
    let mut seen = Vec::new();
    permute(ops, &mut Vec::new(), &mut |order| {
        let causal = order.iter().enumerate().all(|(i, op)| {
            order[i + 1..]
                .iter()
                .all(|later| !op.ctx.covers(later.dot()))
        });
        if !causal {
            return;
        }
        let (e, conflicts) = apply_entry(order);
        let Value::Str(r) = e.value() else {
            panic!("not a string")
        };
        let whole = r.render().into_owned();
        assert_eq!(whole, bytes, "order {:?}", dots(order));
        assert_eq!(r.len(), whole.len());
        for bit in 0..whole.len() as u64 * 8 {
            assert_eq!(r.bit(bit), patch::read_bit(&whole, bit), "bit {bit}");
        }
        assert_eq!(
            conflicts.len(),
            journaled,
            "order {:?}: {conflicts:?}",
            dots(order)
        );
        seen.push(conflicts);
    });
    seen
}

fn dots(ops: &[&Op]) -> Vec<String> {
    ops.iter().map(|o| o.dot().to_string()).collect()
}

fn permute<'a>(rest: &[&'a Op], acc: &mut Vec<&'a Op>, f: &mut dyn FnMut(&[&'a Op])) {
    if rest.is_empty() {
        f(acc);
        return;
    }
    for i in 0..rest.len() {
        let mut others = rest.to_vec();
        let op = others.remove(i);
        acc.push(op);
        permute(&others, acc, f);
        acc.pop();
    }
}

#[test]
fn concurrent_wrap_increments_of_one_field_all_count() {
    let none = VersionVector::new();
    let base = op("pa", 1, 10, &none, set_field(8, 8, 250, KeyObs::default()));
    let seen = vv(&[&base]);
    let a = op("pa", 2, 20, &seen, incr(8, 8, 2, 3));
    let b = op("pb", 1, 21, &seen, incr(8, 8, 1, 10));
    // 255 twice is -1 twice in an i8: the same bits either way.
    let c = op("pc", 1, 22, &seen, incr(8, 8, 1, 255));
    let c2 = op("pc", 2, 23, &vv(&[&base, &c]), incr(8, 8, 1, 255));
    // 250 + 3 + 10 - 1 - 1 = 261 = 5 modulo 256.
    in_every_order(&[&base, &a, &b, &c, &c2], &[0, 5], 0);
}

#[test]
fn an_increment_and_a_concurrent_set_of_the_field_add_up_and_are_journaled() {
    let none = VersionVector::new();
    let base = op("pa", 1, 10, &none, set_field(0, 8, 7, KeyObs::default()));
    let seen = vv(&[&base]);
    // pb's SET is later by the clock: the increment still counts on top.
    let inc = op("pa", 2, 20, &seen, incr(0, 8, 2, 5));
    let write = op("pb", 1, 30, &seen, set_field(0, 8, 100, KeyObs::default()));
    for conflicts in in_every_order(&[&base, &inc, &write], &[105], 1) {
        let c = &conflicts[0];
        assert_eq!(c.rule, Rule::AddedOnTop);
        assert_eq!(c.loser, write.tag);
        assert_eq!(c.winner.dot, inc.dot());
        assert_eq!(&c.loser_value[..], b"bits 0..8=01100100");
        assert_eq!(&c.winner_value[..], b"incrby 0..8 +5");
    }
    // A whole-string SET concurrent with the increment is the same.
    let whole = op("pb", 1, 30, &seen, set("\x01"));
    for conflicts in in_every_order(&[&base, &inc, &whole], &[6], 1) {
        assert_eq!(conflicts[0].rule, Rule::AddedOnTop);
        assert_eq!(conflicts[0].loser, whole.tag);
    }
}

#[test]
fn a_set_that_observed_increments_replaces_them_and_later_ones_count_from_it() {
    let none = VersionVector::new();
    let a1 = op("pa", 1, 10, &none, incr(0, 16, 1, 300));
    let b1 = op("pb", 1, 11, &none, incr(0, 16, 1, 65535));
    let (e, _) = apply_entry(&[&a1, &b1]);
    let seen = vv(&[&a1, &b1]);
    // SETBIT inside the field, as the store sends it: the bit and the
    // whole field as it then reads (299 with bit 0 set).
    let obs = e.observe();
    assert_eq!(obs.fields.len(), 1, "the write observes the field's totals");
    let set = op(
        "pc",
        1,
        20,
        &seen,
        EffectKind::StrPatch {
            patches: vec![
                Patch::Bits {
                    offset: 0,
                    width: 1,
                    value: 1,
                },
                Patch::Bits {
                    offset: 0,
                    width: 16,
                    value: 0x8000 | 299,
                },
            ],
            fold: None,
            obs,
        },
    );
    let after = vv(&[&a1, &b1, &set]);
    let a2 = op("pa", 2, 30, &after, incr(0, 16, 2, 1));
    let b2 = op("pb", 2, 31, &after, incr(0, 16, 1, 2));
    let v = (0x8000u16 | 302).to_be_bytes();
    in_every_order(&[&a1, &b1, &set, &a2, &b2], &v, 0);
}

/// Fields that overlap without being the same each wrap within their own
/// bits and add in order of offset, then width: the u16 at 0 first, then
/// the u8 at 8 (its low byte), whose carry does not leave it.
#[test]
fn increments_of_overlapping_fields_of_different_widths_add_in_field_order() {
    let none = VersionVector::new();
    let low = op("pa", 1, 10, &none, incr(8, 8, 1, 1));
    let wide = op("pb", 1, 20, &none, incr(0, 16, 1, 0xff));
    // 0 + 0x00ff, then the low byte + 1 wraps to 0x00.
    in_every_order(&[&low, &wide], &[0x00, 0x00], 0);
    // A u8 at the top of a u16 adds as 256 times its increment would to
    // the u16: the two commute, whatever the order.
    let high = op("pa", 1, 10, &none, incr(0, 8, 1, 2));
    in_every_order(&[&high, &wide], &[0x02, 0xff], 0);
}

/// OVERFLOW SAT (and FAIL) write the value computed where they ran: two
/// regions saturating one field concurrently keep the later write, and
/// the other is journaled.
#[test]
fn saturating_increments_stay_last_writer_wins() {
    let none = VersionVector::new();
    let base = op("pa", 1, 10, &none, set_field(0, 8, 250, KeyObs::default()));
    let seen = vv(&[&base]);
    let a = op("pa", 2, 20, &seen, set_field(0, 8, 255, KeyObs::default()));
    let b = op("pb", 1, 30, &seen, set_field(0, 8, 252, KeyObs::default()));
    for conflicts in in_every_order(&[&base, &a, &b], &[252], 1) {
        assert_eq!(conflicts[0].rule, Rule::LastWriterWins);
        assert_eq!(conflicts[0].winner, b.tag);
        assert_eq!(conflicts[0].loser, a.tag);
    }
}

/// A fold is the string without its fields' increments, and resets none:
/// increments on every side of two concurrent folds all count.
#[test]
fn folds_keep_every_increment() {
    let none = VersionVector::new();
    let a1 = op("pa", 1, 10, &none, incr(0, 8, 1, 3));
    let b1 = op("pb", 1, 11, &none, incr(0, 8, 1, 4));
    let fold = |region, seq, wall, ctx: &VersionVector, v: &str, obs| {
        op(
            region,
            seq,
            wall,
            ctx,
            EffectKind::StrPatch {
                patches: Vec::new(),
                fold: Some(Blob::from(v)),
                obs,
            },
        )
    };
    let (ea, _) = apply_entry(&[&a1]);
    let (eb, _) = apply_entry(&[&b1]);
    let fa = fold("pa", 2, 20, &vv(&[&a1]), "\x00\x11", ea.observe());
    let fb = fold("pb", 2, 21, &vv(&[&b1]), "\x00\x22", eb.observe());
    // fb's value wins the whole string (fa's is journaled); both
    // increments count in the field, and each fold is journaled with the
    // other region's increment it had not observed.
    for conflicts in in_every_order(&[&a1, &b1, &fa, &fb], &[7, 0x22], 3) {
        let on_top = conflicts.iter().filter(|c| c.rule == Rule::AddedOnTop);
        assert_eq!(on_top.count(), 2, "{conflicts:?}");
    }
}

/// A DEL that observed a field's increments removes them; one it did not
/// observe brings the key back with the field alone.
#[test]
fn a_delete_removes_the_increments_it_observed() {
    let none = VersionVector::new();
    let a1 = op("pa", 1, 10, &none, incr(0, 8, 1, 3));
    let (e, _) = apply_entry(&[&a1]);
    let del = op(
        "pb",
        1,
        20,
        &vv(&[&a1]),
        EffectKind::Del { obs: e.observe() },
    );
    let (gone, _) = apply_entry(&[&a1, &del]);
    assert!(!gone.is_live());
    let b1 = op("pc", 1, 15, &none, incr(0, 8, 1, 4));
    in_every_order(&[&a1, &del, &b1], &[4], 0);
}
