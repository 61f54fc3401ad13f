//! Geo commands: GEOADD, GEODIST, GEOHASH, GEOPOS, GEOSEARCH,
//! GEOSEARCHSTORE and the GEORADIUS family, on sorted sets as Redis keeps
//! them.
//!
//! A geo set is an ordinary sorted set whose scores are 52-bit geohashes
//! (`geohash.rs`), so it replicates and merges as any sorted set does:
//! - GEOADD is ZADD with each position turned into its score; it runs
//!   ZADD's own handler (NX, XX and CH included), which writes a `zadd` of
//!   only the members it adds or moves. Two regions adding members
//!   concurrently both keep theirs; the same member moved in both ends at
//!   one position, the last writer's, like any concurrent ZADD.
//! - The searches read this region's view of the set. A STORE (GEORADIUS
//!   STORE/STOREDIST, GEOSEARCHSTORE) writes its result through
//!   [`zset::store`], a delete of what the destination held and a `zadd` of
//!   the result in one op: what replicates is the stored result, never the
//!   query, so no region re-runs it on its own copy of the source.
//!
//! Replies follow Redis 7.0.15 exactly: the order and texts of its errors
//! (each option is checked as it is read, so which error wins depends on
//! where it stands), the order results come in (cell by cell, by score
//! within a cell, unless ASC, DESC or COUNT sorts them, with the sorts
//! Redis uses, so equal distances come in Redis's order),
//! distances with four decimals and coordinates in Redis's human
//! long-double form ([`Frame::HumanDouble`]).

use std::ops::Bound;

use bytes::Bytes;
use meridian_crdt::value::Score;
use meridian_crdt::{Blob, ZSetVal};
use meridian_resp::{parse_redis_double, Frame};

use super::geohash::{self, Extent, Shape};
use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::util::{bulk, eq_ignore_case, lossy, parse_float, parse_int, syntax_error};
use super::zset;

const ERR_NOT_MEMBER: &str = "ERR could not decode requested zset member";
const ERR_UNIT: &str = "ERR unsupported unit provided. please use M, KM, FT, MI";

pub fn specs() -> Vec<Spec> {
    vec![
        spec("geoadd", -5, WRITE, (1, 1, 1), geoadd),
        spec("geodist", -4, READ, (1, 1, 1), geodist),
        spec("geohash", -2, READ, (1, 1, 1), geohash),
        spec("geopos", -2, READ, (1, 1, 1), geopos),
        spec("georadius", -6, WRITE, (1, 1, 1), georadius),
        spec("georadius_ro", -6, READ, (1, 1, 1), georadius_ro),
        spec("georadiusbymember", -5, WRITE, (1, 1, 1), georadiusbymember),
        spec(
            "georadiusbymember_ro",
            -5,
            READ,
            (1, 1, 1),
            georadiusbymember_ro,
        ),
        spec("geosearch", -7, READ, (1, 1, 1), geosearch),
        spec("geosearchstore", -8, WRITE, (1, 2, 1), geosearchstore),
    ]
}

/// The sorted set at `key` after `zset::read` checked its type (and
/// expired it if due), borrowed from the store alone so the arguments can
/// be read alongside.
fn peek<'a>(ctx: &'a Ctx<'_>, key: &[u8]) -> Option<&'a ZSetVal> {
    match ctx.store.db().peek(key).map(|e| e.value()) {
        Some(meridian_crdt::Value::ZSet(z)) => Some(z),
        _ => None,
    }
}

/// Metres per unit, for a unit name in any case.
fn unit(arg: &[u8]) -> Result<f64, Frame> {
    [("m", 1.0), ("km", 1000.0), ("ft", 0.3048), ("mi", 1609.34)]
        .iter()
        .find(|(name, _)| eq_ignore_case(arg, name))
        .map(|(_, metres)| *metres)
        .ok_or_else(|| Frame::error(ERR_UNIT))
}

/// A longitude and a latitude, each a float, together inside the
/// encodable limits.
fn lon_lat(args: &[Bytes]) -> Result<(f64, f64), Frame> {
    let lon = parse_float(&args[0])?;
    let lat = parse_float(&args[1])?;
    // Neither is NaN: `parse_float` refuses it.
    if !(geohash::LON_MIN..=geohash::LON_MAX).contains(&lon)
        || !(geohash::LAT_MIN..=geohash::LAT_MAX).contains(&lat)
    {
        return Err(Frame::error(format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

/// A float argument, with the error Redis names it by.
fn number(arg: &[u8], what: &str) -> Result<f64, Frame> {
    parse_redis_double(arg).ok_or_else(|| Frame::error(format!("ERR need numeric {what}")))
}

/// `radius unit`: the radius in its unit, and metres per unit.
fn radius(args: &[Bytes]) -> Result<(Extent, f64), Frame> {
    let r = number(&args[0], "radius")?;
    if r < 0.0 {
        return Err(Frame::error("ERR radius cannot be negative"));
    }
    Ok((Extent::Radius(r), unit(&args[1])?))
}

/// `width height unit`: the box in its unit, and metres per unit.
fn rectangle(args: &[Bytes]) -> Result<(Extent, f64), Frame> {
    let width = number(&args[0], "width")?;
    let height = number(&args[1], "height")?;
    if height < 0.0 || width < 0.0 {
        return Err(Frame::error("ERR height or width cannot be negative"));
    }
    Ok((Extent::Box { width, height }, unit(&args[2])?))
}

/// The position of a member of the set, if it is one.
fn member_position(z: &ZSetVal, member: &[u8]) -> Option<(f64, f64)> {
    z.score(member).map(geohash::decode_score)
}

/// A distance as Redis writes it: with four decimals, rounded as Redis
/// rounds them, the value times 10^4 to the nearest integer (ties to even),
/// which is not always the decimal `%.4f` would print. What no `i64` holds
/// (NaN) becomes `i64::MIN`, as x86-64's conversion gives.
fn distance_text(d: f64) -> Frame {
    const DECIMALS: u64 = 10_000;
    if d == 0.0 {
        return Frame::Bulk(Bytes::from_static(b"0.0000"));
    }
    let scaled = d * DECIMALS as f64;
    let units = if scaled.is_nan()
        || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&scaled)
    {
        i64::MIN
    } else {
        scaled.round_ties_even() as i64
    };
    let sign = if units < 0 { "-" } else { "" };
    let magnitude = units.unsigned_abs();
    Frame::Bulk(Bytes::from(format!(
        "{sign}{}.{:04}",
        magnitude / DECIMALS,
        magnitude % DECIMALS
    )))
}

// ----- GEOADD, GEODIST, GEOHASH, GEOPOS -----

/// GEOADD key [NX|XX] [CH] lon lat member [lon lat member …]: ZADD of each
/// position's score, after every position was checked.
fn geoadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut first = 2;
    let (mut nx, mut xx) = (false, false);
    while let Some(opt) = args.get(first) {
        if eq_ignore_case(opt, "nx") {
            nx = true;
        } else if eq_ignore_case(opt, "xx") {
            xx = true;
        } else if !eq_ignore_case(opt, "ch") {
            break;
        }
        first += 1;
    }
    let triples = &args[first..];
    if !triples.len().is_multiple_of(3) || (nx && xx) {
        return syntax_error();
    }
    let mut zadd_args: Vec<Bytes> = Vec::with_capacity(first + triples.len() / 3 * 2);
    zadd_args.push(Bytes::from_static(b"zadd"));
    zadd_args.extend_from_slice(&args[1..first]);
    for triple in triples.chunks(3) {
        let (lon, lat) = match lon_lat(&triple[..2]) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let score = geohash::encode_score(lon, lat);
        zadd_args.push(Bytes::from(score.to_string()));
        zadd_args.push(triple[2].clone());
    }
    zset::zadd(ctx, &zadd_args)
}

/// GEODIST key member1 member2 [unit]
fn geodist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let metres = match args.len() {
        4 => 1.0,
        5 => match unit(&args[4]) {
            Ok(m) => m,
            Err(e) => return e,
        },
        _ => return syntax_error(),
    };
    let z = match zset::read(ctx, &args[1]) {
        Ok(Some(z)) => z,
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    match (member_position(z, &args[2]), member_position(z, &args[3])) {
        (Some((lon1, lat1)), Some((lon2, lat2))) => {
            distance_text(geohash::distance(lon1, lat1, lon2, lat2) / metres)
        }
        _ => Frame::Null,
    }
}

/// GEOHASH key [member …]: each member's standard 11-character geohash.
fn geohash(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let z = match zset::read(ctx, &args[1]) {
        Ok(z) => z,
        Err(e) => return e,
    };
    Frame::Array(
        args[2..]
            .iter()
            .map(|m| match z.and_then(|z| z.score(m)) {
                Some(score) => bulk(&geohash::geohash_string(score)),
                None => Frame::Null,
            })
            .collect(),
    )
}

/// GEOPOS key [member …]: each member's longitude and latitude.
fn geopos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let z = match zset::read(ctx, &args[1]) {
        Ok(z) => z,
        Err(e) => return e,
    };
    Frame::Array(
        args[2..]
            .iter()
            .map(|m| match z.and_then(|z| member_position(z, m)) {
                Some((lon, lat)) => {
                    Frame::Array(vec![Frame::HumanDouble(lon), Frame::HumanDouble(lat)])
                }
                None => Frame::NullArray,
            })
            .collect(),
    )
}

// ----- the searches -----

/// Which search command runs: where its arguments are and which options
/// it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// GEORADIUS key lon lat radius unit …
    Radius,
    /// GEORADIUS_RO: no STORE.
    RadiusRo,
    /// GEORADIUSBYMEMBER key member radius unit …
    ByMember,
    /// GEORADIUSBYMEMBER_RO: no STORE.
    ByMemberRo,
    /// GEOSEARCH key FROM… BY… …
    Search,
    /// GEOSEARCHSTORE dest key FROM… BY… … [STOREDIST]
    SearchStore,
}

impl Command {
    fn source_at(self) -> usize {
        if self == Command::SearchStore {
            2
        } else {
            1
        }
    }

    /// GEOSEARCH's options (FROMMEMBER, BYBOX…) rather than fixed
    /// arguments.
    fn searches(self) -> bool {
        matches!(self, Command::Search | Command::SearchStore)
    }

    /// Takes `STORE key` and `STOREDIST key`.
    fn stores_by_option(self) -> bool {
        matches!(self, Command::Radius | Command::ByMember)
    }

    /// The event a STORE announces.
    fn event(self) -> &'static str {
        if self.searches() {
            "geosearchstore"
        } else {
            "georadiusstore"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    None,
    Asc,
    Desc,
}

/// A search's options, read in Redis's order.
struct Query {
    centre: Option<(f64, f64)>,
    extent: Option<(Extent, f64)>,
    /// Which of GEOSEARCH's FROMMEMBER, FROMLONLAT, BYRADIUS and BYBOX
    /// were given (FROMMEMBER's member is not looked up without a set).
    from_member: bool,
    from_lon_lat: bool,
    by_radius: bool,
    by_box: bool,
    with_dist: bool,
    with_hash: bool,
    with_coord: bool,
    order: Order,
    /// Stop after `count` matches instead of finding them all.
    any: bool,
    /// 0: unlimited.
    count: u64,
    /// The destination and whether it gets distances instead of positions.
    store: Option<(Bytes, bool)>,
}

/// Reads a search command's arguments. `z` is the source set, if the key
/// exists: a member to search around is looked up as its option is read,
/// as Redis does, except when there is no set to look in.
fn parse(args: &[Bytes], command: Command, z: Option<&ZSetVal>) -> Result<Query, Frame> {
    let mut q = Query {
        centre: None,
        extent: None,
        from_member: false,
        from_lon_lat: false,
        by_radius: false,
        by_box: false,
        with_dist: false,
        with_hash: false,
        with_coord: false,
        order: Order::None,
        any: false,
        count: 0,
        store: None,
    };
    let first_option = match command {
        Command::Radius | Command::RadiusRo => {
            q.centre = Some(lon_lat(&args[2..4])?);
            q.extent = Some(radius(&args[4..6])?);
            6
        }
        Command::ByMember | Command::ByMemberRo => {
            // Without a set, the radius is not even read: the reply is
            // empty whatever it says.
            if let Some(z) = z {
                q.centre =
                    Some(member_position(z, &args[2]).ok_or_else(|| Frame::error(ERR_NOT_MEMBER))?);
                q.extent = Some(radius(&args[3..5])?);
            }
            5
        }
        Command::Search => 2,
        Command::SearchStore => {
            q.store = Some((args[1].clone(), false));
            3
        }
    };
    let rest = &args[first_option..];
    let mut i = 0;
    while i < rest.len() {
        let opt = &rest[i];
        let left = rest.len() - i - 1;
        if eq_ignore_case(opt, "withdist") {
            q.with_dist = true;
        } else if eq_ignore_case(opt, "withhash") {
            q.with_hash = true;
        } else if eq_ignore_case(opt, "withcoord") {
            q.with_coord = true;
        } else if eq_ignore_case(opt, "any") {
            q.any = true;
        } else if eq_ignore_case(opt, "asc") {
            q.order = Order::Asc;
        } else if eq_ignore_case(opt, "desc") {
            q.order = Order::Desc;
        } else if eq_ignore_case(opt, "count") && left >= 1 {
            let n = parse_int(&rest[i + 1])?;
            if n <= 0 {
                return Err(Frame::error("ERR COUNT must be > 0"));
            }
            q.count = n.unsigned_abs();
            i += 1;
        } else if command.stores_by_option()
            && left >= 1
            && (eq_ignore_case(opt, "store") || eq_ignore_case(opt, "storedist"))
        {
            q.store = Some((rest[i + 1].clone(), eq_ignore_case(opt, "storedist")));
            i += 1;
        } else if command == Command::SearchStore && eq_ignore_case(opt, "storedist") {
            q.store = Some((args[1].clone(), true));
        } else if command.searches()
            && left >= 1
            && eq_ignore_case(opt, "frommember")
            && !q.from_lon_lat
        {
            if let Some(z) = z {
                q.centre = Some(
                    member_position(z, &rest[i + 1]).ok_or_else(|| Frame::error(ERR_NOT_MEMBER))?,
                );
            }
            q.from_member = true;
            i += 1;
        } else if command.searches()
            && left >= 2
            && eq_ignore_case(opt, "fromlonlat")
            && !q.from_member
        {
            q.centre = Some(lon_lat(&rest[i + 1..i + 3])?);
            q.from_lon_lat = true;
            i += 2;
        } else if command.searches() && left >= 2 && eq_ignore_case(opt, "byradius") && !q.by_box {
            q.extent = Some(radius(&rest[i + 1..i + 3])?);
            q.by_radius = true;
            i += 2;
        } else if command.searches() && left >= 3 && eq_ignore_case(opt, "bybox") && !q.by_radius {
            q.extent = Some(rectangle(&rest[i + 1..i + 4])?);
            q.by_box = true;
            i += 3;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }

    if q.store.is_some() && (q.with_dist || q.with_hash || q.with_coord) {
        let what = if command == Command::SearchStore {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(Frame::error(format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    if command.searches() {
        // Redis names the command as the client spelled it.
        let name = lossy(&args[0]);
        if !q.from_member && !q.from_lon_lat {
            return Err(Frame::error(format!(
                "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
            )));
        }
        if !q.by_radius && !q.by_box {
            return Err(Frame::error(format!(
                "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
            )));
        }
    }
    if q.any && q.count == 0 {
        return Err(Frame::error("ERR the ANY argument requires COUNT argument"));
    }
    Ok(q)
}

/// A member the search found.
struct Found {
    member: Blob,
    lon: f64,
    lat: f64,
    /// Metres from the centre, until the reply converts it to the unit.
    dist: f64,
    score: f64,
}

/// The members of the nine cells around the shape's centre that the shape
/// contains: cell by cell, each in score order. With `limit` (ANY), the
/// search stops once it has that many.
fn find(z: &ZSetVal, shape: &Shape, limit: usize) -> Vec<Found> {
    let cells = geohash::search_cells(shape);
    let mut found = Vec::new();
    let full = |found: &Vec<Found>| limit != 0 && found.len() >= limit;
    // The last cell read: a huge radius can make neighbours coincide, and
    // a cell equal to the last one read is skipped (the centre's is never
    // compared, as in Redis).
    let mut last = 0;
    for (i, cell) in cells.iter().enumerate() {
        if cell.is_none() || (last != 0 && *cell == cells[last]) {
            continue;
        }
        if full(&found) {
            break;
        }
        let (min, max) = cell.score_span();
        let from = Bound::Included((Score(min), Blob::new()));
        for (score, member) in z.index.range((from, Bound::Unbounded)) {
            if score.0 >= max {
                break;
            }
            let (lon, lat) = geohash::decode_score(score.0);
            if let Some(dist) = shape.contains(lon, lat) {
                found.push(Found {
                    member: member.clone(),
                    lon,
                    lat,
                    dist,
                    score: score.0,
                });
            }
            if full(&found) {
                break;
            }
        }
        last = i;
    }
    found
}

/// Redis's comparison of two results by distance (C's `qsort` comparator:
/// NaN is "less" than anything, both ways).
fn by_distance(a: &Found, b: &Found) -> i32 {
    if a.dist > b.dist {
        1
    } else if a.dist == b.dist {
        0
    } else {
        -1
    }
}

/// Sorts as glibc's `qsort` does for Redis (a stable top-down merge sort),
/// so equal keys, and a comparator that is not a total order, give Redis's
/// order.
fn merge_sort<T>(items: &mut Vec<T>, cmp: &impl Fn(&T, &T) -> i32) {
    fn order<T>(
        items: &[T],
        idx: &mut [usize],
        tmp: &mut Vec<usize>,
        cmp: &impl Fn(&T, &T) -> i32,
    ) {
        if idx.len() <= 1 {
            return;
        }
        let mid = idx.len() / 2;
        order(items, &mut idx[..mid], tmp, cmp);
        order(items, &mut idx[mid..], tmp, cmp);
        tmp.clear();
        let (mut l, mut r) = (0, mid);
        while l < mid && r < idx.len() {
            if cmp(&items[idx[l]], &items[idx[r]]) <= 0 {
                tmp.push(idx[l]);
                l += 1;
            } else {
                tmp.push(idx[r]);
                r += 1;
            }
        }
        tmp.extend_from_slice(&idx[l..mid]);
        tmp.extend_from_slice(&idx[r..]);
        idx.copy_from_slice(tmp);
    }
    let mut idx: Vec<usize> = (0..items.len()).collect();
    let mut tmp = Vec::with_capacity(items.len());
    order(items, &mut idx, &mut tmp, cmp);
    let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
    items.extend(idx.into_iter().filter_map(|i| slots[i].take()));
}

/// Redis's partial quicksort (`pqsort`, Bentley and McIlroy's qsort, as
/// Redis 7.0 has it: without the switch to insertion sort after a pass
/// that swapped nothing, and skipping the parts outside positions
/// `keep.0..=keep.1`): those positions end up holding what a full sort
/// would put there, with equal keys in the order Redis leaves them.
fn partial_sort<T>(v: &mut [T], cmp: &impl Fn(&T, &T) -> i32, keep: (usize, usize)) {
    let overlaps = |start: usize, len: usize| !(keep.1 < start || keep.0 > start + len - 1);
    let insertion = |v: &mut [T], lo: usize, n: usize| {
        for m in lo + 1..lo + n {
            let mut l = m;
            while l > lo && cmp(&v[l - 1], &v[l]) > 0 {
                v.swap(l, l - 1);
                l -= 1;
            }
        }
    };
    let med3 = |v: &[T], a: usize, b: usize, c: usize| -> usize {
        if cmp(&v[a], &v[b]) < 0 {
            if cmp(&v[b], &v[c]) < 0 {
                b
            } else if cmp(&v[a], &v[c]) < 0 {
                c
            } else {
                a
            }
        } else if cmp(&v[b], &v[c]) > 0 {
            b
        } else if cmp(&v[a], &v[c]) < 0 {
            a
        } else {
            c
        }
    };
    let swap_runs = |v: &mut [T], a: usize, b: usize, n: usize| {
        for k in 0..n {
            v.swap(a + k, b + k);
        }
    };
    // Ranges still to sort: one branch is followed in the loop, the other
    // pushed here (Redis recurses into it).
    let mut pending = vec![(0, v.len())];
    while let Some((mut lo, mut n)) = pending.pop() {
        loop {
            if n < 7 {
                insertion(v, lo, n);
                break;
            }
            let mut pm = lo + n / 2;
            if n > 7 {
                let mut pl = lo;
                let mut pn = lo + n - 1;
                if n > 40 {
                    let d = n / 8;
                    pl = med3(v, pl, pl + d, pl + 2 * d);
                    pm = med3(v, pm - d, pm, pm + d);
                    pn = med3(v, pn - 2 * d, pn - d, pn);
                }
                pm = med3(v, pl, pm, pn);
            }
            v.swap(lo, pm);
            let (mut pa, mut pb) = (lo + 1, lo + 1);
            let (mut pc, mut pd) = (lo + n - 1, lo + n - 1);
            loop {
                while pb <= pc {
                    let c = cmp(&v[pb], &v[lo]);
                    if c > 0 {
                        break;
                    }
                    if c == 0 {
                        v.swap(pa, pb);
                        pa += 1;
                    }
                    pb += 1;
                }
                while pb <= pc {
                    let c = cmp(&v[pc], &v[lo]);
                    if c < 0 {
                        break;
                    }
                    if c == 0 {
                        v.swap(pc, pd);
                        pd -= 1;
                    }
                    pc -= 1;
                }
                if pb > pc {
                    break;
                }
                v.swap(pb, pc);
                pb += 1;
                pc -= 1;
            }
            let end = lo + n;
            let r = (pa - lo).min(pb - pa);
            swap_runs(v, lo, pb - r, r);
            let r = (pd - pc).min(end - pd - 1);
            swap_runs(v, pb, end - r, r);
            let left = pb - pa;
            if left > 1 && overlaps(lo, left) {
                pending.push((lo, left));
            }
            let right = pd - pc;
            if right > 1 && overlaps(end - right, right) {
                lo = end - right;
                n = right;
                continue;
            }
            break;
        }
    }
}

/// What a search ends in.
enum Outcome {
    Reply(Frame),
    Store {
        dest: Bytes,
        items: Vec<(Blob, f64)>,
    },
}

/// Every search command: options, the nine cells, sorting, then the reply
/// or the stored set.
fn search(ctx: &mut Ctx<'_>, args: &[Bytes], command: Command) -> Frame {
    if let Err(e) = zset::read(ctx, &args[command.source_at()]) {
        return e;
    }
    let outcome = run(peek(ctx, &args[command.source_at()]), args, command);
    match outcome {
        Ok(Outcome::Reply(frame)) => frame,
        Ok(Outcome::Store { dest, items }) => zset::store(ctx, &dest, items, command.event()),
        Err(e) => e,
    }
}

fn run(z: Option<&ZSetVal>, args: &[Bytes], command: Command) -> Result<Outcome, Frame> {
    let q = parse(args, command, z)?;
    let (Some(z), Some((lon, lat)), Some((extent, metres_per_unit))) = (z, q.centre, q.extent)
    else {
        // No set (the only way to have no centre after parsing): nothing
        // is found, and a STORE deletes its destination.
        return Ok(match q.store {
            Some((dest, _)) => Outcome::Store {
                dest,
                items: Vec::new(),
            },
            None => Outcome::Reply(Frame::Array(Vec::new())),
        });
    };
    let shape = Shape {
        lon,
        lat,
        extent,
        metres_per_unit,
    };
    let order = if q.count != 0 && q.order == Order::None && !q.any {
        Order::Asc
    } else {
        q.order
    };
    let limit = if q.any {
        usize::try_from(q.count).unwrap_or(usize::MAX)
    } else {
        0
    };
    let mut found = find(z, &shape, limit);
    let returned = match usize::try_from(q.count) {
        Ok(count) if count != 0 && count < found.len() => count,
        _ => found.len(),
    };
    let cmp: Option<fn(&Found, &Found) -> i32> = match order {
        Order::None => None,
        Order::Asc => Some(by_distance),
        Order::Desc => Some(|a, b| -by_distance(a, b)),
    };
    // All of them with `qsort`, or with COUNT only the first ones, by a
    // partial quicksort: each leaves equal distances in its own order.
    if let Some(cmp) = cmp {
        if returned == found.len() {
            merge_sort(&mut found, &cmp);
        } else {
            partial_sort(&mut found, &cmp, (0, returned - 1));
        }
    }
    found.truncate(returned);
    for f in &mut found {
        f.dist /= metres_per_unit;
    }
    if let Some((dest, dist)) = q.store {
        let items = found
            .into_iter()
            .map(|f| (f.member, if dist { f.dist } else { f.score }))
            .collect();
        return Ok(Outcome::Store { dest, items });
    }
    let detailed = q.with_dist || q.with_hash || q.with_coord;
    let reply = found
        .into_iter()
        .map(|f| {
            let member = bulk(&f.member);
            if !detailed {
                return member;
            }
            let mut item = vec![member];
            if q.with_dist {
                item.push(distance_text(f.dist));
            }
            if q.with_hash {
                // C converts the score to `long long`: truncated.
                item.push(Frame::Integer(f.score as i64));
            }
            if q.with_coord {
                item.push(Frame::Array(vec![
                    Frame::HumanDouble(f.lon),
                    Frame::HumanDouble(f.lat),
                ]));
            }
            Frame::Array(item)
        })
        .collect();
    Ok(Outcome::Reply(Frame::Array(reply)))
}

fn georadius(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    search(ctx, args, Command::Radius)
}

fn georadius_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    search(ctx, args, Command::RadiusRo)
}

fn georadiusbymember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    search(ctx, args, Command::ByMember)
}

fn georadiusbymember_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    search(ctx, args, Command::ByMemberRo)
}

fn geosearch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    search(ctx, args, Command::Search)
}

fn geosearchstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    search(ctx, args, Command::SearchStore)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_by_c_qsort(keys: &[i32]) -> Vec<(i32, usize)> {
        let mut v: Vec<(i32, usize)> = keys.iter().copied().zip(0..).collect();
        merge_sort(&mut v, &|a: &(i32, usize), b: &(i32, usize)| a.0 - b.0);
        v
    }

    #[test]
    fn merge_sort_is_stable() {
        let got = sorted_by_c_qsort(&[3, 1, 2, 1, 3, 0, 2]);
        assert_eq!(
            got,
            vec![(0, 5), (1, 1), (1, 3), (2, 2), (2, 6), (3, 0), (3, 4)]
        );
    }

    /// The kept positions hold what a full sort puts there, for every
    /// prefix and every input size around the algorithm's thresholds.
    #[test]
    fn partial_sort_orders_the_kept_prefix() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for n in [1usize, 2, 6, 7, 8, 9, 40, 41, 100, 500] {
            for _ in 0..20 {
                let keys: Vec<i64> = (0..n).map(|_| next(50) as i64).collect();
                let mut want = keys.clone();
                want.sort();
                let keep = next(n as u64) as usize;
                let mut got = keys.clone();
                partial_sort(
                    &mut got,
                    &|a: &i64, b: &i64| (a - b).signum() as i32,
                    (0, keep),
                );
                assert_eq!(got[..=keep], want[..=keep], "n {n} keep {keep} {keys:?}");
                let mut rest = got.clone();
                rest.sort();
                assert_eq!(rest, want);
            }
        }
    }

    /// A comparator that is no total order (NaN distances) neither panics
    /// nor loses elements, and leaves them where glibc's `qsort` does.
    #[test]
    fn sorts_survive_nan() {
        let cmp = |a: &(f64, usize), b: &(f64, usize)| {
            if a.0 > b.0 {
                1
            } else if a.0 == b.0 {
                0
            } else {
                -1
            }
        };
        let keys = [3.0, f64::NAN, 1.0, f64::NAN, 2.0, 0.5, 7.0, 1.0, 9.0];
        let mut v: Vec<(f64, usize)> = keys.iter().copied().zip(0..).collect();
        merge_sort(&mut v, &cmp);
        let order: Vec<usize> = v.iter().map(|(_, i)| *i).collect();
        assert_eq!(order, [5, 2, 7, 4, 0, 1, 3, 6, 8]);
        let mut w: Vec<(f64, usize)> = (0..60)
            .map(|i| {
                (
                    if i % 7 == 0 {
                        f64::NAN
                    } else {
                        (i % 13) as f64
                    },
                    i,
                )
            })
            .collect();
        partial_sort(&mut w, &cmp, (0, 5));
        let mut seen: Vec<usize> = w.iter().map(|(_, i)| *i).collect();
        seen.sort();
        assert_eq!(seen, (0..60).collect::<Vec<_>>());
    }

    #[test]
    fn distances_print_with_four_decimals() {
        assert_eq!(distance_text(0.0), Frame::Bulk(Bytes::from("0.0000")));
        assert_eq!(distance_text(0.03125), Frame::Bulk(Bytes::from("0.0312")));
        assert_eq!(
            distance_text(166274.15137),
            Frame::Bulk(Bytes::from("166274.1514"))
        );
        assert_eq!(
            distance_text(f64::NAN),
            Frame::Bulk(Bytes::from("-922337203685477.5808"))
        );
        assert_eq!(distance_text(-1.25), Frame::Bulk(Bytes::from("-1.2500")));
        // GEODISTs where `%.4f` of the exact value and Redis's rounding of
        // the scaled value differ; redis-server 7.0.15 prints these.
        for (a, b, metres, want) in [
            (
                1219556624522621.0,
                18139562072184.0,
                0.3048,
                "40884618.6836",
            ),
            (
                1241192073027187.0,
                1526738883009378.0,
                0.3048,
                "16860112.7722",
            ),
            (284072579482098.0, 1415129584750823.0, 1.0, "10131076.8058"),
        ] {
            let (a, b) = (geohash::decode_score(a), geohash::decode_score(b));
            let d = geohash::distance(a.0, a.1, b.0, b.1) / metres;
            assert_eq!(distance_text(d), Frame::Bulk(Bytes::from(want)));
        }
    }

    #[test]
    fn out_of_range_positions_are_refused_as_redis_words_it() {
        let args = |a: &str, b: &str| vec![Bytes::from(a.to_owned()), Bytes::from(b.to_owned())];
        assert_eq!(
            lon_lat(&args("200", "1")).err(),
            Some(Frame::error(
                "ERR invalid longitude,latitude pair 200.000000,1.000000"
            ))
        );
        assert_eq!(
            lon_lat(&args("inf", "1")).err(),
            Some(Frame::error(
                "ERR invalid longitude,latitude pair inf,1.000000"
            ))
        );
        assert_eq!(
            lon_lat(&args("x", "1")).err(),
            Some(Frame::error("ERR value is not a valid float"))
        );
        assert!(lon_lat(&args("-180", "85.05112878")).is_ok());
    }
}
