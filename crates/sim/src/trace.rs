//! The event log of a run: a running hash of every event (same seed, same
//! hash) and the last few events, printed when a checker finds an anomaly.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Trace {
    hash: u64,
    events: u64,
    tail: VecDeque<String>,
    keep: usize,
}

impl Trace {
    pub fn new(keep: usize) -> Trace {
        Trace {
            hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
            tail: VecDeque::with_capacity(keep),
            keep,
        }
    }

    pub fn record(&mut self, tick: u64, event: String) {
        let line = format!("t={tick} {event}");
        for &b in line.as_bytes().iter().chain(b"\n") {
            self.hash ^= b as u64;
            self.hash = self.hash.wrapping_mul(0x100_0000_01b3);
        }
        self.events += 1;
        if self.keep > 0 {
            if self.tail.len() == self.keep {
                self.tail.pop_front();
            }
            self.tail.push_back(line);
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}
