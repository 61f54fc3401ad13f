//! Keyspace policies: which rule a key lives under when regions disagree
//! about who can reach whom.
//!
//! Policies are matched in the order given, first match wins; keys no
//! pattern matches are `active-active`. Patterns are Redis globs.

use meridian_crdt::RegionId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Always writable; concurrent writes merge (the default).
    ActiveActive,
    /// Writable only while this region holds the majority lease.
    Majority,
    /// Only the primary writes, and only while it holds the lease: at first
    /// the named region, later whichever region was elected (`election`).
    Primary(RegionId),
}

impl Policy {
    pub fn name(&self) -> String {
        match self {
            Policy::ActiveActive => "active-active".into(),
            Policy::Majority => "majority".into(),
            Policy::Primary(r) => format!("primary:{r}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--policy {0:?}: use PATTERN=POLICY with POLICY active-active, majority or primary:REGION")]
pub struct PolicyError(pub String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies {
    rules: Vec<(Vec<u8>, Policy)>,
}

/// What a write to some key may do in this region right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteVerdict {
    Allowed,
    /// `-FENCED <reason>`.
    Fenced(String),
    /// `-READONLY …`: another region is the primary.
    ReadOnly {
        primary: RegionId,
        pattern: String,
    },
}

/// The elected primary as this region sees it now.
#[derive(Debug, Clone, Copy)]
pub struct PrimaryNow<'a> {
    /// `None` before any is known: the configured one applies.
    pub region: Option<RegionId>,
    /// Whether this region may write as primary (`Election::may_write`).
    pub writable: Result<(), &'a str>,
}

impl Policies {
    /// Parses `PATTERN=POLICY` rules in order.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<Policies, PolicyError> {
        let mut out = Vec::new();
        for rule in rules {
            let text = rule.as_ref();
            let bad = || PolicyError(text.to_string());
            let (pattern, policy) = text.rsplit_once('=').ok_or_else(bad)?;
            if pattern.is_empty() {
                return Err(bad());
            }
            let policy = match policy {
                "active-active" => Policy::ActiveActive,
                "majority" => Policy::Majority,
                p => match p.strip_prefix("primary:") {
                    Some(r) => Policy::Primary(RegionId::new(r).map_err(|_| bad())?),
                    None => return Err(bad()),
                },
            };
            out.push((pattern.as_bytes().to_vec(), policy));
        }
        Ok(Policies { rules: out })
    }

    /// The first rule matching `key`, as (pattern, policy).
    pub fn for_key(&self, key: &[u8]) -> (&[u8], &Policy) {
        self.rules
            .iter()
            .find(|(p, _)| glob_match(p, key, false))
            .map_or((b"*", &Policy::ActiveActive), |(p, pol)| (&p[..], pol))
    }

    pub fn rules(&self) -> impl Iterator<Item = (&[u8], &Policy)> {
        self.rules.iter().map(|(p, pol)| (&p[..], pol))
    }

    /// True when some rule can refuse writes (needs a lease).
    pub fn needs_lease(&self) -> bool {
        self.rules.iter().any(|(_, p)| *p != Policy::ActiveActive)
    }

    /// The one region the `primary:REGION` rules name (one primary is
    /// elected for the whole cluster), or why there is not one.
    pub fn single_primary(&self) -> Result<Option<RegionId>, String> {
        let named: std::collections::BTreeSet<RegionId> = self
            .rules
            .iter()
            .filter_map(|(_, p)| match p {
                Policy::Primary(r) => Some(*r),
                _ => None,
            })
            .collect();
        if named.len() > 1 {
            let names: Vec<String> = named.iter().map(|r| r.to_string()).collect();
            return Err(format!(
                "every primary:REGION rule must name the same region (one primary is elected for the whole cluster), not {}",
                names.join(" and ")
            ));
        }
        Ok(named.into_iter().next())
    }

    /// The region named by the first `primary:REGION` rule: the primary of
    /// term 0 for every `primary` keyspace.
    pub fn initial_primary(&self) -> Option<RegionId> {
        self.rules.iter().find_map(|(_, p)| match p {
            Policy::Primary(r) => Some(*r),
            _ => None,
        })
    }

    /// Whether a write to `key` is allowed in `region`, given whether it
    /// holds the majority lease and why not, and the elected primary.
    pub fn verdict(
        &self,
        key: &[u8],
        region: RegionId,
        lease: Result<(), &str>,
        primary: PrimaryNow<'_>,
    ) -> WriteVerdict {
        let (pattern, policy) = self.for_key(key);
        match policy {
            Policy::ActiveActive => WriteVerdict::Allowed,
            Policy::Majority => match lease {
                Ok(()) => WriteVerdict::Allowed,
                Err(why) => WriteVerdict::Fenced(why.to_string()),
            },
            Policy::Primary(configured) => {
                let current = primary.region.unwrap_or(*configured);
                if current != region {
                    return WriteVerdict::ReadOnly {
                        primary: current,
                        pattern: String::from_utf8_lossy(pattern).into_owned(),
                    };
                }
                match lease.and(primary.writable) {
                    Ok(()) => WriteVerdict::Allowed,
                    Err(why) => WriteVerdict::Fenced(why.to_string()),
                }
            }
        }
    }
}

/// Redis's glob matching (`stringmatchlen`), shared by keyspace policies,
/// KEYS/SCAN MATCH, ACL key patterns and Pub/Sub patterns: `*`, `?`, `[...]` with ranges and
/// `^` negation, and `\` escapes.
pub fn glob_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    fn lower(b: u8, nocase: bool) -> u8 {
        if nocase {
            b.to_ascii_lowercase()
        } else {
            b
        }
    }
    /// `skip_longer` is set once the rest of the pattern after a `*`
    /// matched from no position of the rest of the string: a `*` earlier
    /// in the pattern matching more would only make the rest start later,
    /// so it need not try (Redis's `skipLongerMatches`, without which a
    /// pattern of many `*` takes exponential time).
    fn go(p: &[u8], s: &[u8], nocase: bool, depth: usize, skip_longer: &mut bool) -> bool {
        if depth > 1000 {
            return false;
        }
        let (mut pi, mut si) = (0, 0);
        while pi < p.len() {
            match p[pi] {
                b'*' => {
                    while pi + 1 < p.len() && p[pi + 1] == b'*' {
                        pi += 1;
                    }
                    if pi + 1 == p.len() {
                        return true;
                    }
                    for start in si..=s.len() {
                        if go(&p[pi + 1..], &s[start..], nocase, depth + 1, skip_longer) {
                            return true;
                        }
                        if *skip_longer {
                            return false;
                        }
                    }
                    *skip_longer = true;
                    return false;
                }
                b'?' => {
                    if si >= s.len() {
                        return false;
                    }
                    si += 1;
                }
                b'[' => {
                    if si >= s.len() {
                        return false;
                    }
                    pi += 1;
                    let not = pi < p.len() && p[pi] == b'^';
                    if not {
                        pi += 1;
                    }
                    let mut matched = false;
                    loop {
                        if pi >= p.len() {
                            pi -= 1;
                            break;
                        }
                        if p[pi] == b'\\' && pi + 2 < p.len() {
                            pi += 1;
                            if p[pi] == s[si] {
                                matched = true;
                            }
                        } else if p[pi] == b']' {
                            break;
                        } else if pi + 2 < p.len() && p[pi + 1] == b'-' {
                            let (mut a, mut b) = (lower(p[pi], nocase), lower(p[pi + 2], nocase));
                            if a > b {
                                std::mem::swap(&mut a, &mut b);
                            }
                            let c = lower(s[si], nocase);
                            if c >= a && c <= b {
                                matched = true;
                            }
                            pi += 2;
                        } else if lower(p[pi], nocase) == lower(s[si], nocase) {
                            matched = true;
                        }
                        pi += 1;
                    }
                    if not {
                        matched = !matched;
                    }
                    if !matched {
                        return false;
                    }
                    si += 1;
                }
                b'\\' if pi + 1 < p.len() => {
                    pi += 1;
                    if si >= s.len() || lower(p[pi], nocase) != lower(s[si], nocase) {
                        return false;
                    }
                    si += 1;
                }
                c => {
                    if si >= s.len() || lower(c, nocase) != lower(s[si], nocase) {
                        return false;
                    }
                    si += 1;
                }
            }
            pi += 1;
        }
        si == s.len()
    }
    go(pattern, string, nocase, 0, &mut false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIGURED: PrimaryNow<'static> = PrimaryNow {
        region: None,
        writable: Ok(()),
    };

    #[test]
    fn first_matching_rule_wins_and_the_default_is_active_active() {
        let p = Policies::parse(&["acct:vip:*=primary:eu-west", "acct:*=majority"]).unwrap();
        let eu = RegionId::new("eu-west").unwrap();
        let us = RegionId::new("us-east").unwrap();
        let elected_us = PrimaryNow {
            region: Some(us),
            writable: Ok(()),
        };
        assert_eq!(p.for_key(b"acct:vip:1").1, &Policy::Primary(eu));
        assert_eq!(p.for_key(b"acct:1").1, &Policy::Majority);
        assert_eq!(p.for_key(b"cart:1").1, &Policy::ActiveActive);
        assert_eq!(
            p.verdict(b"cart:1", us, Err("no quorum"), CONFIGURED),
            WriteVerdict::Allowed
        );
        assert_eq!(
            p.verdict(b"acct:1", us, Err("no quorum"), CONFIGURED),
            WriteVerdict::Fenced("no quorum".into())
        );
        assert!(matches!(
            p.verdict(b"acct:vip:1", us, Ok(()), CONFIGURED),
            WriteVerdict::ReadOnly { .. }
        ));
        assert_eq!(
            p.verdict(b"acct:vip:1", eu, Ok(()), CONFIGURED),
            WriteVerdict::Allowed
        );
        assert_eq!(p.initial_primary(), Some(eu));
        // Once us-east is elected, eu-west is the read-only one.
        assert!(matches!(
            p.verdict(b"acct:vip:1", eu, Ok(()), elected_us),
            WriteVerdict::ReadOnly { primary, .. } if primary == us
        ));
        assert_eq!(
            p.verdict(b"acct:vip:1", us, Ok(()), elected_us),
            WriteVerdict::Allowed
        );
        let waiting = PrimaryNow {
            region: Some(us),
            writable: Err("waiting"),
        };
        assert_eq!(
            p.verdict(b"acct:vip:1", us, Ok(()), waiting),
            WriteVerdict::Fenced("waiting".into())
        );
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in [
            "acct:*",
            "=majority",
            "x=quorum",
            "x=primary:",
            "x=primary:EU",
        ] {
            assert!(Policies::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_match_like_redis() {
        // Many stars against a string the pattern cannot match: Redis's
        // suite gives this pattern to KEYS, which took exponential time.
        let started = std::time::Instant::now();
        assert!(!glob_match(
            b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
            &[b'a'; 40],
            false
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(glob_match(b"a*b*c", b"aXbYbZc", false));
        assert!(glob_match(b"*a*b", b"xaab", false));
        assert!(glob_match(b"acct:*", b"acct:42", false));
        assert!(glob_match(b"a?c", b"abc", false));
        assert!(glob_match(b"[a-c]x", b"bx", false));
        assert!(!glob_match(b"[^a-c]x", b"bx", false));
        assert!(!glob_match(b"acct:*", b"account", false));
    }
}
