//! ACL users: who may run which commands on which keys.
//!
//! A user has passwords (stored only as salted SHA-256 digests), an on/off
//! switch, one command level (`+@read` ⊂ `+@write` ⊂ `+@admin`) and key
//! patterns. The `default` user is what `--requirepass` configures: its
//! password, or `nopass` when there is none; a connection starts as
//! `default` and is authenticated at once only if `default` needs no
//! password.
//!
//! Users are per region: ACL SETUSER changes only the region it is sent to
//! and is not replicated. A file (`--aclfile`) gives every region the same
//! users at start.
//!
//! This module does no I/O and takes randomness as a parameter.

use anyhow::Context as _;
use std::borrow::Cow;
use std::collections::BTreeMap;

use rand::RngCore;
use sha2::{Digest, Sha256};

pub const DEFAULT_USER: &str = "default";

/// Commands a user may run, each level including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    /// Commands that do not change the keyspace and are not administrative.
    Read,
    /// Plus commands that change the keyspace.
    Write,
    /// Everything: CONFIG, SHUTDOWN, FLUSHALL, CLIENT KILL, SAVE, ACL, ...
    Admin,
}

impl Level {
    fn category(self) -> &'static str {
        match self {
            Level::None => "-@all",
            Level::Read => "+@read",
            Level::Write => "+@write",
            Level::Admin => "+@all",
        }
    }
}

/// A salted digest: `SHA-256(salt ‖ SHA-256(password))`. Hashing the
/// password's own SHA-256 lets a Redis-style `#<sha256hex>` from an ACL file
/// be stored the same way as a password given in clear.
#[derive(Clone)]
struct PasswordHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl PasswordHash {
    fn from_sha256(inner: &[u8; 32], salt: [u8; 16]) -> PasswordHash {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(inner);
        PasswordHash {
            salt,
            digest: h.finalize().into(),
        }
    }

    fn matches(&self, password: &[u8]) -> bool {
        let inner: [u8; 32] = Sha256::digest(password).into();
        let candidate = PasswordHash::from_sha256(&inner, self.salt);
        // Constant time, so timing does not tell how close a guess was.
        candidate
            .digest
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Whether this entry stores the password whose SHA-256 is `inner`.
    fn same_password(&self, inner: &[u8; 32]) -> bool {
        PasswordHash::from_sha256(inner, self.salt).digest == self.digest
    }

    /// `ms1$<salt hex>$<digest hex>`: what `ACL LIST` shows and `ACL SAVE`
    /// writes, so a saved file logs the same passwords in without ever
    /// holding them or their plain SHA-256.
    fn encoded(&self) -> String {
        format!("{SALTED_PREFIX}{}${}", hex(&self.salt), hex(&self.digest))
    }

    fn decode(text: &[u8]) -> Option<PasswordHash> {
        let rest = text.strip_prefix(SALTED_PREFIX.as_bytes())?;
        let (salt, digest) = rest.split_at(rest.iter().position(|&b| b == b'$')?);
        let salt = unhex(salt)?;
        let digest = unhex(&digest[1..])?;
        Some(PasswordHash {
            salt: salt.try_into().ok()?,
            digest: digest.try_into().ok()?,
        })
    }
}

/// Marks a salted digest in a `#` rule (a bare `#` takes Redis's plain
/// SHA-256 of the password).
const SALTED_PREFIX: &str = "ms1$";

#[derive(Clone)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    passwords: Vec<PasswordHash>,
    pub level: Level,
    pub allkeys: bool,
    pub key_patterns: Vec<Vec<u8>>,
}

impl User {
    /// A user as `ACL SETUSER` creates it: off, no password, no commands,
    /// no keys.
    fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            level: Level::None,
            allkeys: false,
            key_patterns: Vec::new(),
        }
    }

    /// The rules that recreate this user, as `ACL LIST` shows them and
    /// `ACL SAVE` writes them: passwords only as salted digests
    /// (`#ms1$<salt>$<digest>`), which SETUSER and the ACL file take back.
    pub fn rules(&self) -> Vec<String> {
        let mut r = vec![if self.enabled { "on" } else { "off" }.to_string()];
        if self.nopass {
            r.push("nopass".into());
        }
        for p in &self.passwords {
            r.push(format!("#{}", p.encoded()));
        }
        if self.allkeys {
            r.push("~*".into());
        } else {
            for p in &self.key_patterns {
                r.push(format!("~{}", String::from_utf8_lossy(p)));
            }
        }
        r.push(self.level.category().into());
        r
    }

    /// Each password's salted digest, as `ACL GETUSER` lists them.
    pub fn password_digests(&self) -> Vec<String> {
        self.passwords.iter().map(PasswordHash::encoded).collect()
    }

    fn may_access(&self, key: &[u8]) -> bool {
        self.allkeys
            || self
                .key_patterns
                .iter()
                .any(|p| crate::cmd::util::glob_match(p, key, false))
    }

    fn apply(&mut self, rule: &[u8], rng: &mut dyn RngCore) -> Result<(), String> {
        let text = String::from_utf8_lossy(rule);
        let lower = text.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "allkeys" | "~*" => {
                self.allkeys = true;
                self.key_patterns.clear();
            }
            "resetkeys" => {
                self.allkeys = false;
                self.key_patterns.clear();
            }
            "+@all" | "allcommands" | "+@admin" => self.level = Level::Admin,
            "+@write" => self.level = self.level.max(Level::Write),
            "+@read" => self.level = self.level.max(Level::Read),
            "-@all" | "nocommands" | "-@read" => self.level = Level::None,
            "-@write" => self.level = self.level.min(Level::Read),
            "-@admin" => self.level = self.level.min(Level::Write),
            "reset" => *self = User::new(&self.name),
            _ => return self.apply_value(rule, rng),
        }
        Ok(())
    }

    fn apply_value(&mut self, rule: &[u8], rng: &mut dyn RngCore) -> Result<(), String> {
        let (first, rest) = rule.split_first().ok_or("Syntax error")?;
        match first {
            b'#' if rest.starts_with(SALTED_PREFIX.as_bytes()) => {
                let hash = PasswordHash::decode(rest).ok_or(
                    "A salted password hash must read ms1$<32 hex digits>$<64 hex digits>",
                )?;
                if !self
                    .passwords
                    .iter()
                    .any(|p| p.salt == hash.salt && p.digest == hash.digest)
                {
                    self.passwords.push(hash);
                }
                self.nopass = false;
            }
            b'>' | b'#' => {
                let inner: [u8; 32] = if *first == b'>' {
                    Sha256::digest(rest).into()
                } else {
                    unhex32(rest).ok_or(
                        "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
                    )?
                };
                if !self.passwords.iter().any(|p| p.same_password(&inner)) {
                    let mut salt = [0u8; 16];
                    rng.fill_bytes(&mut salt);
                    self.passwords.push(PasswordHash::from_sha256(&inner, salt));
                }
                self.nopass = false;
            }
            b'<' | b'!' => {
                let inner: [u8; 32] = if *first == b'<' {
                    Sha256::digest(rest).into()
                } else {
                    unhex32(rest).ok_or("Syntax error")?
                };
                let before = self.passwords.len();
                self.passwords.retain(|p| !p.same_password(&inner));
                if self.passwords.len() == before {
                    return Err("no such password".into());
                }
            }
            b'~' => {
                if self.allkeys {
                    return Err("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns".into());
                }
                if !self.key_patterns.iter().any(|p| p == rest) {
                    self.key_patterns.push(rest.to_vec());
                }
            }
            b'+' | b'-' => {
                return Err("Meridian supports only the categories +@read, +@write, +@admin and +@all (and their - forms)".into())
            }
            _ => return Err("Syntax error".into()),
        }
        Ok(())
    }
}

/// What a command needs from the user running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Allowed to everyone (AUTH, HELLO, QUIT, RESET, ACL WHOAMI, ...).
    Nothing,
    Level(Level),
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The user is gone (ACL DELUSER, ACL LOAD): the connection closes.
    NoUser,
    /// Names the command (`set`, or `config|set` for a subcommand).
    Command(String),
    /// Names the first key the user may not access.
    Key(String),
}

/// CLIENT subcommands Redis puts in `@admin`.
const ADMIN_CLIENT_SUBCOMMANDS: &[&str] = &["kill", "list", "pause", "unpause", "no-evict"];
/// ACL subcommands everyone may run.
const OPEN_ACL_SUBCOMMANDS: &[&str] = &["whoami", "cat", "help"];

/// What running `name` with `args` needs. `write` is the command table's
/// write flag, `no_auth` its before-AUTH flag.
pub fn need(
    name: &'static str,
    args: &[bytes::Bytes],
    write: bool,
    no_auth: bool,
) -> (Need, Cow<'static, str>) {
    let sub = || {
        args.get(1)
            .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
            .unwrap_or_default()
    };
    if no_auth {
        return (Need::Nothing, Cow::Borrowed(name));
    }
    match name {
        "config" | "shutdown" | "flushall" | "flushdb" | "save" | "bgsave" | "swapdb" | "debug"
        | "monitor" => (Need::Level(Level::Admin), Cow::Borrowed(name)),
        "acl" => {
            let sub = sub();
            if OPEN_ACL_SUBCOMMANDS.contains(&sub.as_str()) {
                (Need::Nothing, Cow::Owned(format!("acl|{sub}")))
            } else {
                (Need::Level(Level::Admin), Cow::Owned(format!("acl|{sub}")))
            }
        }
        "client" => {
            let sub = sub();
            let level = if ADMIN_CLIENT_SUBCOMMANDS.contains(&sub.as_str()) {
                Level::Admin
            } else {
                Level::Read
            };
            (Need::Level(level), Cow::Owned(format!("client|{sub}")))
        }
        // A container whose table entry does not write, as in Redis, with
        // subcommands that do.
        "xgroup" => {
            let sub = sub();
            let level = if sub == "help" {
                Level::Read
            } else {
                Level::Write
            };
            (Need::Level(level), Cow::Owned(format!("xgroup|{sub}")))
        }
        _ if write => (Need::Level(Level::Write), Cow::Borrowed(name)),
        _ => (Need::Level(Level::Read), Cow::Borrowed(name)),
    }
}

/// Every user of a region.
#[derive(Clone)]
pub struct Acl {
    users: BTreeMap<String, User>,
}

impl Acl {
    /// Only `default`: every command and key, with `requirepass` as its
    /// password or `nopass` without one.
    pub fn new(requirepass: Option<&str>, rng: &mut dyn RngCore) -> Acl {
        let mut acl = Acl {
            users: BTreeMap::new(),
        };
        acl.users
            .insert(DEFAULT_USER.into(), Acl::default_user(requirepass, rng));
        acl
    }

    fn default_user(requirepass: Option<&str>, rng: &mut dyn RngCore) -> User {
        let mut u = User::new(DEFAULT_USER);
        u.enabled = true;
        u.level = Level::Admin;
        u.allkeys = true;
        match requirepass {
            Some(p) => {
                let rule = [b">".as_slice(), p.as_bytes()].concat();
                u.apply_value(&rule, rng)
                    .expect("a password rule always applies");
            }
            None => u.nopass = true,
        }
        u
    }

    /// Users from an ACL file: one `user NAME RULES...` line each, as in
    /// Redis (`#<sha256hex>` or `>password`); blank lines are skipped.
    /// `default` keeps `requirepass` unless the file defines it.
    pub fn from_file(
        text: &str,
        requirepass: Option<&str>,
        rng: &mut dyn RngCore,
    ) -> Result<Acl, String> {
        let mut acl = Acl::new(requirepass, rng);
        let mut seen = std::collections::BTreeSet::new();
        for (n, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            let lineno = n + 1;
            if words[0] != "user" || words.len() < 2 {
                return Err(format!(
                    "line {lineno}: should start with user keyword followed by a user name"
                ));
            }
            let name = words[1];
            if !seen.insert(name.to_string()) {
                return Err(format!("line {lineno}: duplicate user '{name}' found"));
            }
            let mut user = User::new(name);
            for w in &words[2..] {
                user.apply(w.as_bytes(), rng)
                    .map_err(|e| format!("line {lineno}: error in user declaration '{w}': {e}"))?;
            }
            acl.users.insert(name.to_string(), user);
        }
        Ok(acl)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Whether a new connection is logged in as `default` without AUTH.
    pub fn default_needs_no_auth(&self) -> bool {
        self.users
            .get(DEFAULT_USER)
            .is_some_and(|u| u.enabled && u.nopass)
    }

    /// Whether `password` logs in as `name`.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> bool {
        let Ok(name) = std::str::from_utf8(name) else {
            return false;
        };
        self.users.get(name).is_some_and(|u| {
            u.enabled && (u.nopass || u.passwords.iter().any(|p| p.matches(password)))
        })
    }

    /// Applies rules to a user, creating it if needed; all or nothing.
    pub fn set_user(
        &mut self,
        name: &str,
        rules: &[&[u8]],
        rng: &mut dyn RngCore,
    ) -> Result<(), String> {
        let mut user = self
            .users
            .get(name)
            .cloned()
            .unwrap_or_else(|| User::new(name));
        for rule in rules {
            user.apply(rule, rng).map_err(|e| {
                format!(
                    "Error in ACL SETUSER modifier '{}': {e}",
                    String::from_utf8_lossy(rule)
                )
            })?;
        }
        self.users.insert(name.to_string(), user);
        Ok(())
    }

    /// Sets `default`'s password as `CONFIG SET requirepass` does.
    pub fn set_default_password(&mut self, password: Option<&str>, rng: &mut dyn RngCore) {
        let rules: Vec<Vec<u8>> = match password {
            Some(p) => vec![
                b"resetpass".to_vec(),
                [b">".as_slice(), p.as_bytes()].concat(),
            ],
            None => vec![b"nopass".to_vec()],
        };
        let rules: Vec<&[u8]> = rules.iter().map(Vec::as_slice).collect();
        let _ = self.set_user(DEFAULT_USER, &rules, rng);
    }

    /// The users as an ACL file (`user NAME RULES...` per line) that
    /// [`Acl::from_file`] reads back to the same users.
    pub fn to_file(&self) -> String {
        self.users
            .values()
            .map(|u| format!("user {} {}\n", u.name, u.rules().join(" ")))
            .collect()
    }

    /// Removes users; `default` cannot be removed. Returns how many went.
    pub fn delete_users(&mut self, names: &[&str]) -> Result<usize, String> {
        if names.contains(&DEFAULT_USER) {
            return Err("The 'default' user cannot be removed".into());
        }
        Ok(names
            .iter()
            .filter(|n| self.users.remove(**n).is_some())
            .count())
    }

    /// Whether `user` may run a command that needs `need` on `keys`.
    pub fn check(
        &self,
        user: &str,
        need: Need,
        command: &str,
        keys: &[&[u8]],
    ) -> Result<(), Denied> {
        self.check_keys_of(user, need, command, || keys.to_vec())
    }

    /// [`Acl::check`], finding the command's keys only for a user whose
    /// access depends on them (most users, `default` included, have
    /// `allkeys`).
    pub fn check_keys_of<'k>(
        &self,
        user: &str,
        need: Need,
        command: &str,
        keys: impl FnOnce() -> Vec<&'k [u8]>,
    ) -> Result<(), Denied> {
        let Some(u) = self.users.get(user) else {
            return Err(Denied::NoUser);
        };
        let Need::Level(level) = need else {
            return Ok(());
        };
        if u.level < level {
            return Err(Denied::Command(command.to_string()));
        }
        if u.allkeys {
            return Ok(());
        }
        if let Some(k) = keys().iter().find(|k| !u.may_access(k)) {
            return Err(Denied::Key(String::from_utf8_lossy(k).into_owned()));
        }
        Ok(())
    }
}

/// Why an `ACL LOG` entry was made, with Redis's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogReason {
    Auth,
    Command,
    Key,
}

impl LogReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LogReason::Auth => "auth",
            LogReason::Command => "command",
            LogReason::Key => "key",
        }
    }
}

/// One `ACL LOG` entry: repeats of the same refusal within
/// [`ACL_LOG_GROUP_MS`] raise `count` instead of adding entries.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub id: u64,
    pub count: u64,
    pub reason: LogReason,
    /// `toplevel` or `multi`.
    pub context: &'static str,
    /// The command (or `AUTH`) or the key refused.
    pub object: String,
    pub username: String,
    pub client_info: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// Entries `ACL LOG` keeps (Redis's `acllog-max-len` default).
pub const ACL_LOG_MAX_ENTRIES: usize = 128;
/// Refusals this close together with the same reason, context, object and
/// user are one entry, as in Redis.
pub const ACL_LOG_GROUP_MS: u64 = 60_000;

/// Recent refusals (failed AUTH, commands and keys a user may not use),
/// newest first. Passwords are never recorded.
#[derive(Debug, Default)]
pub struct AclLog {
    entries: std::collections::VecDeque<LogEntry>,
    next_id: u64,
}

impl AclLog {
    pub fn record(
        &mut self,
        reason: LogReason,
        context: &'static str,
        object: &str,
        username: &str,
        client_info: String,
        now_ms: u64,
    ) {
        let same = self.entries.iter_mut().find(|e| {
            e.reason == reason
                && e.context == context
                && e.object == object
                && e.username == username
                && now_ms.saturating_sub(e.updated_ms) < ACL_LOG_GROUP_MS
        });
        if let Some(e) = same {
            e.count += 1;
            e.updated_ms = now_ms;
            e.client_info = client_info;
            return;
        }
        self.entries.push_front(LogEntry {
            id: self.next_id,
            count: 1,
            reason,
            context,
            object: object.to_string(),
            username: username.to_string(),
            client_info,
            created_ms: now_ms,
            updated_ms: now_ms,
        });
        self.next_id += 1;
        self.entries.truncate(ACL_LOG_MAX_ENTRIES);
    }

    /// The newest `count` entries, newest first.
    pub fn entries(&self, count: usize) -> impl Iterator<Item = &LogEntry> {
        self.entries.iter().take(count)
    }

    pub fn reset(&mut self) {
        self.entries.clear();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    unhex(text)?.try_into().ok()
}

/// Lowercase hex of any even length.
fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let mut out = vec![0u8; text.len() / 2];
    for (i, pair) in text.chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The ACL users a region starts with: `--aclfile` if given, else only the
/// `default` user with `--requirepass` (or no password).
pub fn load(config: &crate::config::Config) -> anyhow::Result<Acl> {
    let mut rng = rand::thread_rng();
    let Some(path) = &config.aclfile else {
        return Ok(Acl::new(config.requirepass.as_deref(), &mut rng));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --aclfile {}", path.display()))?;
    Acl::from_file(&text, config.requirepass.as_deref(), &mut rng)
        .map_err(|e| anyhow::anyhow!("--aclfile {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn passwords_are_salted_and_never_listed_in_clear() {
        let mut r = rng();
        let mut acl = Acl::new(None, &mut r);
        acl.set_user("a", &[b"on", b">hunter2", b"+@read", b"~k*"], &mut r)
            .unwrap();
        acl.set_user("b", &[b"on", b">hunter2"], &mut r).unwrap();
        let (a, b) = (acl.user("a").unwrap(), acl.user("b").unwrap());
        assert_ne!(a.password_digests(), b.password_digests(), "per-user salt");
        assert!(!a.rules().join(" ").contains("hunter2"));
        assert!(acl.authenticate(b"a", b"hunter2"));
        assert!(!acl.authenticate(b"a", b"hunter3"));
        assert!(!acl.authenticate(b"nobody", b"hunter2"));
    }

    #[test]
    fn a_redis_sha256_from_a_file_logs_in() {
        let mut r = rng();
        // sha256("secret")
        let text = "user ro on #2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b ~cache:* +@read\n\n";
        let acl = Acl::from_file(text, None, &mut r).unwrap();
        assert!(acl.authenticate(b"ro", b"secret"));
        assert!(acl.default_needs_no_auth(), "the file leaves default alone");
        let ro = acl.user("ro").unwrap();
        assert_eq!(ro.level, Level::Read);
        assert!(Acl::from_file("usr x on", None, &mut r).is_err());
    }

    /// ACL SAVE writes what ACL LOAD reads: the same users log in with
    /// the same passwords, and the file holds neither the password nor its
    /// plain SHA-256.
    #[test]
    fn a_saved_file_loads_the_same_users() {
        let mut r = rng();
        let mut acl = Acl::new(Some("adminpw"), &mut r);
        acl.set_user("ro", &[b"on", b">readpw", b"~cache:*", b"+@read"], &mut r)
            .unwrap();
        acl.set_user("off", &[b"off", b">x", b"+@write", b"allkeys"], &mut r)
            .unwrap();
        let text = acl.to_file();
        assert!(!text.contains("readpw"));
        let plain_sha = hex(&Sha256::digest(b"readpw"));
        assert!(!text.contains(&plain_sha), "{text}");
        let back = Acl::from_file(&text, None, &mut r).unwrap();
        assert!(back.authenticate(b"ro", b"readpw"));
        assert!(back.authenticate(b"default", b"adminpw"));
        assert!(!back.authenticate(b"ro", b"other"));
        assert!(!back.authenticate(b"off", b"x"), "disabled stays disabled");
        assert_eq!(back.to_file(), text, "a second save is identical");
        let ro = back.user("ro").unwrap();
        assert_eq!((ro.level, ro.allkeys), (Level::Read, false));
        assert!(Acl::from_file("user x on #ms1$00$zz", None, &mut r).is_err());
    }

    #[test]
    fn acl_log_groups_repeats_and_keeps_the_newest() {
        let mut log = AclLog::default();
        log.record(
            LogReason::Auth,
            "toplevel",
            "AUTH",
            "bob",
            "id=1".into(),
            1_000,
        );
        log.record(
            LogReason::Auth,
            "toplevel",
            "AUTH",
            "bob",
            "id=2".into(),
            2_000,
        );
        log.record(LogReason::Key, "multi", "k1", "bob", "id=2".into(), 3_000);
        let e: Vec<_> = log.entries(10).collect();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].reason, e[0].object.as_str()), (LogReason::Key, "k1"));
        assert_eq!(
            (e[1].count, e[1].updated_ms, e[1].created_ms),
            (2, 2_000, 1_000)
        );
        log.record(
            LogReason::Auth,
            "toplevel",
            "AUTH",
            "bob",
            "id=3".into(),
            70_000,
        );
        assert_eq!(
            log.entries(10).count(),
            3,
            "a minute later starts a new entry"
        );
        for i in 0..200 {
            log.record(
                LogReason::Command,
                "toplevel",
                &format!("c{i}"),
                "u",
                String::new(),
                0,
            );
        }
        assert_eq!(log.entries(usize::MAX).count(), ACL_LOG_MAX_ENTRIES);
        assert_eq!(log.entries(1).next().unwrap().object, "c199");
        log.reset();
        assert_eq!(log.entries(10).count(), 0);
    }

    #[test]
    fn levels_and_key_patterns_are_enforced() {
        let mut r = rng();
        let mut acl = Acl::new(Some("pw"), &mut r);
        acl.set_user("w", &[b"on", b"nopass", b"+@write", b"~app:*"], &mut r)
            .unwrap();
        let k_ok = bytes::Bytes::from_static(b"app:1");
        let k_bad = bytes::Bytes::from_static(b"other");
        let write = Need::Level(Level::Write);
        assert_eq!(acl.check("w", write, "set", &[&k_ok]), Ok(()));
        assert_eq!(
            acl.check("w", write, "set", &[&k_bad]),
            Err(Denied::Key("other".into()))
        );
        assert_eq!(
            acl.check("w", Need::Level(Level::Admin), "flushall", &[]),
            Err(Denied::Command("flushall".into()))
        );
        assert_eq!(acl.check("gone", write, "set", &[]), Err(Denied::NoUser));
        assert!(acl.set_user("w", &[b"+get"], &mut r).is_err());
        assert!(acl.delete_users(&["default"]).is_err());
    }
}
