//! LCS: the longest common subsequence of two strings, with Redis 7.0's
//! options (LEN, IDX, MINMATCHLEN, WITHMATCHLEN), its dynamic-programming
//! table and the same walk back through it, so the ranges IDX reports are
//! the ones Redis reports.

use bytes::Bytes;
use meridian_crdt::Value;
use meridian_resp::Frame;

use super::info::PROTO_MAX_BULK_LEN_BYTES;
use super::spec::{spec, Ctx, Spec, READ};
use super::util::{eq_ignore_case, pair, parse_int, syntax_error};

pub fn specs() -> Vec<Spec> {
    vec![spec("lcs", -3, READ, (1, 2, 1), lcs)]
}

/// What LCS is asked for.
#[derive(Default)]
struct LcsOpts {
    len: bool,
    idx: bool,
    with_match_len: bool,
    min_match_len: u64,
}

fn lcs_opts(args: &[Bytes]) -> Result<LcsOpts, Frame> {
    let mut o = LcsOpts::default();
    let mut j = 3;
    while j < args.len() {
        let a = &args[j];
        if eq_ignore_case(a, "idx") {
            o.idx = true;
        } else if eq_ignore_case(a, "len") {
            o.len = true;
        } else if eq_ignore_case(a, "withmatchlen") {
            o.with_match_len = true;
        } else if eq_ignore_case(a, "minmatchlen") && j + 1 < args.len() {
            // Redis reads a negative length as 0.
            o.min_match_len = parse_int(&args[j + 1])?.max(0) as u64;
            j += 1;
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    if o.idx && o.len {
        return Err(Frame::error(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    Ok(o)
}

/// The string under `key` (empty when missing); `None` for another type.
fn string_at(ctx: &mut Ctx<'_>, key: &[u8]) -> Option<Vec<u8>> {
    match ctx.db().get(key).map(|e| e.value()) {
        None => Some(Vec::new()),
        Some(Value::Str(r)) => Some(r.render().into_owned()),
        Some(_) => None,
    }
}

fn lcs(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (Some(a), Some(b)) = (string_at(ctx, &args[1]), string_at(ctx, &args[2])) else {
        return Frame::error("ERR The specified keys must contain string values");
    };
    let opts = match lcs_opts(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    if a.len() >= u32::MAX as usize - 1 || b.len() >= u32::MAX as usize - 1 {
        return Frame::error("ERR String too long for LCS");
    }
    let table = match Table::build(&a, &b) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let total = table.at(a.len(), b.len());
    if opts.len {
        return Frame::Integer(i64::from(total));
    }
    let (common, ranges) = table.walk_back(&a, &b, total as usize);
    if !opts.idx {
        return Frame::Bulk(Bytes::from(common));
    }
    let matches = ranges
        .into_iter()
        .filter(|r| opts.min_match_len == 0 || u64::from(r.len()) >= opts.min_match_len)
        .map(|r| {
            let mut item = vec![
                Frame::Array(vec![
                    Frame::Integer(i64::from(r.a.0)),
                    Frame::Integer(i64::from(r.a.1)),
                ]),
                Frame::Array(vec![
                    Frame::Integer(i64::from(r.b.0)),
                    Frame::Integer(i64::from(r.b.1)),
                ]),
            ];
            if opts.with_match_len {
                item.push(Frame::Integer(i64::from(r.len())));
            }
            Frame::Array(item)
        })
        .collect();
    Frame::Map(vec![
        pair("matches", Frame::Array(matches)),
        pair("len", Frame::Integer(i64::from(total))),
    ])
}

/// One common run: inclusive positions in the first and second string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    a: (u32, u32),
    b: (u32, u32),
}

impl Range {
    fn len(&self) -> u32 {
        self.a.1 - self.a.0 + 1
    }
}

/// `LCS(i, j)`: the LCS length of the first `i` bytes of one string and
/// the first `j` of the other, for every `i`, `j`.
struct Table {
    cells: Vec<u32>,
    width: usize,
}

impl Table {
    /// Fills the table, refusing (with Redis's errors) one larger than the
    /// largest bulk string a client may send, or one that cannot be
    /// allocated.
    fn build(a: &[u8], b: &[u8]) -> Result<Table, Frame> {
        let width = b.len() + 1;
        let cells_len = (a.len() + 1).checked_mul(width);
        let bytes = cells_len.and_then(|n| n.checked_mul(std::mem::size_of::<u32>()));
        let (Some(cells_len), Some(bytes)) = (cells_len, bytes) else {
            return Err(Frame::error(
                "ERR Insufficient memory, failed allocating transient memory for LCS",
            ));
        };
        if bytes as u64 > PROTO_MAX_BULK_LEN_BYTES {
            return Err(Frame::error(
                "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
            ));
        }
        let mut cells = Vec::new();
        if cells.try_reserve_exact(cells_len).is_err() {
            return Err(Frame::error(
                "ERR Insufficient memory, failed allocating transient memory for LCS",
            ));
        }
        cells.resize(cells_len, 0u32);
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                cells[i * width + j] = if a[i - 1] == b[j - 1] {
                    cells[(i - 1) * width + j - 1] + 1
                } else {
                    cells[(i - 1) * width + j].max(cells[i * width + j - 1])
                };
            }
        }
        Ok(Table { cells, width })
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * self.width + j]
    }

    /// Walks back from the end of both strings as Redis does: the common
    /// subsequence, and its contiguous runs from last to first.
    fn walk_back(&self, a: &[u8], b: &[u8], total: usize) -> (Vec<u8>, Vec<Range>) {
        let mut common = vec![0u8; total];
        let mut ranges = Vec::new();
        let mut current: Option<Range> = None;
        let (mut i, mut j, mut left) = (a.len(), b.len(), total);
        while i > 0 && j > 0 {
            let mut emit = false;
            if a[i - 1] == b[j - 1] {
                common[left - 1] = a[i - 1];
                let (ai, bj) = ((i - 1) as u32, (j - 1) as u32);
                match current.as_mut() {
                    None => {
                        current = Some(Range {
                            a: (ai, ai),
                            b: (bj, bj),
                        })
                    }
                    // Contiguous with the run so far: extend it backward.
                    Some(r) if r.a.0 == ai + 1 && r.b.0 == bj + 1 => {
                        r.a.0 = ai;
                        r.b.0 = bj;
                    }
                    Some(_) => emit = true,
                }
                // A run that reached the start of either string is done.
                if current.is_some_and(|r| r.a.0 == 0 || r.b.0 == 0) {
                    emit = true;
                }
                left -= 1;
                i -= 1;
                j -= 1;
            } else {
                if self.at(i - 1, j) > self.at(i, j - 1) {
                    i -= 1;
                } else {
                    j -= 1;
                }
                emit = current.is_some();
            }
            if emit {
                ranges.extend(current.take());
            }
        }
        (common, ranges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &str, b: &str) -> (String, Vec<Range>) {
        let t = Table::build(a.as_bytes(), b.as_bytes()).unwrap();
        let total = t.at(a.len(), b.len()) as usize;
        let (common, ranges) = t.walk_back(a.as_bytes(), b.as_bytes(), total);
        (String::from_utf8(common).unwrap(), ranges)
    }

    #[test]
    fn finds_redis_documented_example() {
        // The example of Redis's LCS documentation.
        let (common, ranges) = run("ohmytext", "mynewtext");
        assert_eq!(common, "mytext");
        assert_eq!(
            ranges,
            [
                Range {
                    a: (4, 7),
                    b: (5, 8)
                },
                Range {
                    a: (2, 3),
                    b: (0, 1)
                },
            ]
        );
    }

    #[test]
    fn empty_and_disjoint_strings_have_nothing_in_common() {
        assert_eq!(run("", "abc"), (String::new(), vec![]));
        assert_eq!(run("abc", "xyz"), (String::new(), vec![]));
    }
}
