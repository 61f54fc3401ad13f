//! What a run injects and how long it lasts.

use std::fmt;

/// A kind of fault the scheduler may inject during the fault phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Random per-message delay: messages of different links overtake each
    /// other (never within one link, which is one TCP stream).
    Delay,
    /// A link reconnects and resumes from an older log position than the
    /// receiver's version vector needs, so it resends ops already applied.
    Dup,
    /// A connection drops; it resumes from the receiver's version vector.
    Drop,
    /// The regions split in two groups that cannot reach each other.
    Partition,
    /// One direction between two regions is cut.
    OneWay,
    /// A region is killed (`kill -9`: its unflushed log buffer is lost) and
    /// later restarted from its data directory.
    Crash,
    /// A region's wall clock is offset or jumps, forwards or backwards.
    Clock,
    /// The machine of a region loses power: every file keeps what was
    /// fdatasynced and, of the rest, a random prefix (possibly ending inside
    /// a record). Acknowledged but unsynced ops may be lost, as `--fsync
    /// everysec` allows; none of them may ever have reached a peer.
    Power,
    /// The region that believes it is the primary of `primary` keyspaces
    /// is cut off: both ways, or only its outbound paths (it still hears
    /// the others, so its quorum lease alone would not fence it).
    IsolatePrimary,
    /// Every region that is up writes a snapshot and compacts its log, keeping only the
    /// last `sim::BACKLOG_OPS` records of what its peers have not
    /// acknowledged (`--repl-backlog-ops`): a peer further behind is
    /// repaired by an anti-entropy session, and so is any peer lacking what
    /// the snapshot holds after a restart.
    Compact,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::Delay,
        Fault::Dup,
        Fault::Drop,
        Fault::Partition,
        Fault::OneWay,
        Fault::Crash,
        Fault::Clock,
        Fault::Power,
        Fault::IsolatePrimary,
        Fault::Compact,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Delay => "delay",
            Fault::Dup => "dup",
            Fault::Drop => "drop",
            Fault::Partition => "partition",
            Fault::OneWay => "oneway",
            Fault::Crash => "crash",
            Fault::Clock => "clock",
            Fault::Power => "power",
            Fault::IsolatePrimary => "isolate-primary",
            Fault::Compact => "compact",
        }
    }

    /// Parses a comma-separated list: fault names, `all` or `none`.
    pub fn parse_list(list: &str) -> Result<Vec<Fault>, String> {
        let mut out = Vec::new();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => out.extend(Fault::ALL),
                "none" => {}
                w => match Fault::ALL.iter().find(|f| f.name() == w) {
                    Some(f) => out.push(*f),
                    None => {
                        let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                        return Err(format!(
                            "unknown fault {w:?} (known: {}, all, none)",
                            known.join(", ")
                        ));
                    }
                },
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A deliberate bug, switched on at run time to prove that the checkers
/// catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakage {
    None,
    /// Every third relayed op (one whose origin is not the sending region)
    /// is applied with its effects stripped: its dot counts as applied but
    /// its writes are lost, as a merge that silently drops data would.
    LoseRelayedEffects,
    /// Links ship records once they reach the OS instead of once they are
    /// synced, so a power loss can take ops a peer already holds.
    ShipUnsynced,
    /// Elected primaries skip their leases (`ElectionConfig::
    /// unsafe_skip_leases`): a new primary writes at once, and a primary
    /// writes while it holds the wall-clock quorum lease even when nobody
    /// follows it any more.
    SkipPrimaryLeases,
    /// Leases run on the wall clock itself (`ViewConfig::unsafe_wall_clock`):
    /// a clock set back stretches them, and a cut-off region keeps writing
    /// `majority` keys.
    WallClockLease,
    /// Tombstone collection does not wait for causal stability: a region
    /// drops settled counter incarnations as soon as it holds them.
    CollectEarly,
    /// Each side of an anti-entropy session leaves the first key the other
    /// sent out of its merge and joins the other's vector anyway
    /// (`unsafe_skip_one_key`): the vector claims ops whose effects on that
    /// key the state lacks, and the next session skips it again.
    AeSkipKey,
    /// A region applies each relayed op (one whose origin is not the
    /// sending region) without its list inserts: its dot counts as applied
    /// but the pushed elements are missing there. Where they stay missing
    /// the regions never converge; a later removal there whose range spans
    /// one, or a state merge (which drops what the other side's vector
    /// covers and it lacks), takes it everywhere without anyone having
    /// popped it, which only the list checker sees.
    LoseRelayedPushes,
    /// A script's writes are committed as two ops, its first write alone
    /// and then the rest, so a region can apply one without the other: a
    /// check point then sees half a transfer or half a pair.
    SplitScripts,
    /// XADD `*` takes Redis's ID of a region alone, without the region's
    /// slot: two regions adding in one millisecond take one ID, and one
    /// entry hides the other.
    StreamIdsWithoutSlot,
    /// BITFIELD WRAP increments are written as bit patches of the fields'
    /// new values, as before they merged as counters: of two concurrent
    /// increments of one field, the later write wins and the other is lost.
    BitfieldIncrAsBits,
}

impl Breakage {
    pub fn parse(s: &str) -> Result<Breakage, String> {
        match s {
            "none" => Ok(Breakage::None),
            "lose-relayed-effects" => Ok(Breakage::LoseRelayedEffects),
            "ship-unsynced" => Ok(Breakage::ShipUnsynced),
            "skip-primary-leases" => Ok(Breakage::SkipPrimaryLeases),
            "wall-clock-lease" => Ok(Breakage::WallClockLease),
            "collect-early" => Ok(Breakage::CollectEarly),
            "ae-skip-key" => Ok(Breakage::AeSkipKey),
            "lose-relayed-pushes" => Ok(Breakage::LoseRelayedPushes),
            "split-scripts" => Ok(Breakage::SplitScripts),
            "stream-ids-without-slot" => Ok(Breakage::StreamIdsWithoutSlot),
            "bitfield-incr-as-bits" => Ok(Breakage::BitfieldIncrAsBits),
            other => Err(format!(
                "unknown breakage {other:?} (known: none, lose-relayed-effects, ship-unsynced, skip-primary-leases, wall-clock-lease, collect-early, ae-skip-key, lose-relayed-pushes, split-scripts, stream-ids-without-slot, bitfield-incr-as-bits)"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub regions: usize,
    /// Ticks during which the workload writes and faults are injected.
    pub fault_ticks: u64,
    /// After the fault phase, every fault is healed; convergence must follow
    /// within this many ticks.
    pub heal_ticks_max: u64,
    pub faults: Vec<Fault>,
    /// Chance per tick, in per mille, that a fault is injected.
    pub fault_per_mille: u64,
    pub breakage: Breakage,
    /// List writes in the workload (see `driver::Workload::lists`).
    pub lists: bool,
    /// Scripted writes in the workload (see `driver::Workload::scripts`).
    pub scripts: bool,
    /// SETBITs in the workload (see `driver::Workload::bits`).
    pub bits: bool,
    /// Stream writes in the workload (see `driver::Workload::streams`).
    pub streams: bool,
    /// BITFIELD WRAP increments in the workload (see
    /// `driver::Workload::bitfields`).
    pub bitfields: bool,
    /// Events kept for the trace printed with an anomaly.
    pub trace_keep: usize,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            regions: 3,
            fault_ticks: 300,
            heal_ticks_max: 3_000,
            faults: Fault::ALL.to_vec(),
            fault_per_mille: 40,
            breakage: Breakage::None,
            lists: true,
            scripts: true,
            bits: true,
            streams: true,
            bitfields: true,
            trace_keep: 40,
        }
    }

    pub fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }
}
