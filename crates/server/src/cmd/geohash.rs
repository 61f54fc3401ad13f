//! The geohash arithmetic of Redis's geo commands, pure and exact.
//!
//! A position is stored as the score of a sorted-set member: a 52-bit
//! geohash in which 26 bits of latitude (the even bits) and 26 bits of
//! longitude (the odd bits) are interleaved, each the index of the cell the
//! coordinate falls in when its range is halved 26 times. The latitude range
//! is Web Mercator's (±85.05112878), not the poles' ±90: the GEOHASH command
//! alone re-encodes on ±90 to print the standard base-32 string.
//!
//! Replies must match Redis to the last digit, so every formula here is
//! evaluated in the same order, with the same constants and the same C
//! conversions as Redis's `geohash.c` and `geohash_helper.c`: a score is
//! turned into bits as x86-64 C converts a double to `uint64_t`, cell
//! indexes wrap as C's `uint32_t` does, and the trigonometry goes through
//! the platform's libm as Redis's does.
//!
//! A search (GEOSEARCH, GEORADIUS) looks at nine cells: the one holding the
//! centre and its eight neighbours, at a precision ([`search_cells`]) coarse
//! enough that they cover the shape, and keeps the members of those cells
//! the shape contains ([`Shape::contains`]).

/// Longitude limits of an encodable position.
pub const LON_MIN: f64 = -180.0;
pub const LON_MAX: f64 = 180.0;
/// Latitude limits of an encodable position (EPSG:3857).
pub const LAT_MIN: f64 = -85.05112878;
pub const LAT_MAX: f64 = 85.05112878;

/// Bits per coordinate of a stored score.
pub const STEP_MAX: u8 = 26;

/// The Earth's radius Redis's haversine uses.
pub const EARTH_RADIUS_M: f64 = 6372797.560856;

/// Half the Earth's circumference in Web Mercator metres: where the step
/// estimate starts halving.
const MERCATOR_MAX_M: f64 = 20037726.37;

/// Degrees to radians, folded once as Redis's `M_PI / 180.0` is.
const RADIANS_PER_DEGREE: f64 = std::f64::consts::PI / 180.0;

/// The base-32 alphabet of standard geohash strings.
const BASE32: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

fn deg_rad(degrees: f64) -> f64 {
    degrees * RADIANS_PER_DEGREE
}

fn rad_deg(radians: f64) -> f64 {
    radians / RADIANS_PER_DEGREE
}

/// An interval of one coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

/// The longitudes of every encoding.
pub const LON_RANGE: Range = Range {
    min: LON_MIN,
    max: LON_MAX,
};
/// The latitudes of stored scores.
pub const LAT_RANGE: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};
/// The latitudes of the standard geohash GEOHASH prints.
const STANDARD_LAT_RANGE: Range = Range {
    min: -90.0,
    max: 90.0,
};

/// A cell: `step` bits per coordinate, interleaved in the low `2 × step`
/// bits of `bits`. The zero cell (no bits, no step) stands for "none", as
/// in Redis, where a search drops a neighbour it does not need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub bits: u64,
    pub step: u8,
}

impl Cell {
    pub const NONE: Cell = Cell { bits: 0, step: 0 };

    pub fn is_none(self) -> bool {
        self.bits == 0 && self.step == 0
    }

    /// The cell's bits moved to the top of a 52-bit score: the lowest score
    /// inside the cell.
    pub fn align52(self) -> u64 {
        self.bits << (52 - u32::from(self.step) * 2)
    }

    /// The scores inside the cell: from its first score to the first score
    /// of the next cell, excluded.
    pub fn score_span(self) -> (f64, f64) {
        let next = Cell {
            bits: self.bits.wrapping_add(1),
            step: self.step,
        };
        (self.align52() as f64, next.align52() as f64)
    }
}

/// The rectangle a cell covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    pub lon: Range,
    pub lat: Range,
}

/// Spreads the 32 bits of `v` to the even bits of the result.
fn spread(v: u32) -> u64 {
    let mut v = u64::from(v);
    v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
    v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF;
    v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    v = (v | (v << 2)) & 0x3333_3333_3333_3333;
    (v | (v << 1)) & 0x5555_5555_5555_5555
}

/// Gathers the even bits of `v` into 32 bits: the inverse of [`spread`].
fn gather(v: u64) -> u32 {
    let mut v = v & 0x5555_5555_5555_5555;
    v = (v | (v >> 1)) & 0x3333_3333_3333_3333;
    v = (v | (v >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    v = (v | (v >> 4)) & 0x00FF_00FF_00FF_00FF;
    v = (v | (v >> 8)) & 0x0000_FFFF_0000_FFFF;
    v = (v | (v >> 16)) & 0x0000_0000_FFFF_FFFF;
    v as u32
}

/// Latitude in the even bits, longitude in the odd ones.
fn interleave(lat: u32, lon: u32) -> u64 {
    spread(lat) | (spread(lon) << 1)
}

/// The cell of `step` bits per coordinate holding the position, within the
/// given ranges; `None` where Redis's encoder refuses (a position outside
/// the encodable limits or the ranges, a step of 0 or above 32).
pub fn encode(lon_range: Range, lat_range: Range, lon: f64, lat: f64, step: u8) -> Option<Cell> {
    let empty = |r: Range| r.min == 0.0 && r.max == 0.0;
    if step == 0 || step > 32 || empty(lat_range) || empty(lon_range) {
        return None;
    }
    // No coordinate here is NaN: arguments refuse it, decoding never
    // makes it.
    if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_range.min || lat > lat_range.max || lon < lon_range.min || lon > lon_range.max {
        return None;
    }
    let cells = (1u64 << step) as f64;
    let lat_offset = (lat - lat_range.min) / (lat_range.max - lat_range.min) * cells;
    let lon_offset = (lon - lon_range.min) / (lon_range.max - lon_range.min) * cells;
    // Both offsets lie in [0, 2^step]: C's conversion to `uint32_t`
    // truncates them, as `as` does.
    Some(Cell {
        bits: interleave(lat_offset as u32, lon_offset as u32),
        step,
    })
}

/// The rectangle a cell covers within the given ranges; `None` for the
/// zero cell.
pub fn decode(lon_range: Range, lat_range: Range, cell: Cell) -> Option<Area> {
    if cell.is_none() {
        return None;
    }
    let lat_index = gather(cell.bits);
    let lon_index = gather(cell.bits >> 1);
    let cells = (1u64 << cell.step) as f64;
    let lat_scale = lat_range.max - lat_range.min;
    let lon_scale = lon_range.max - lon_range.min;
    // `index + 1` is C's `uint32_t` sum: it wraps for the last index.
    let edge = |min: f64, index: u32, scale: f64| min + (f64::from(index) * 1.0 / cells) * scale;
    Some(Area {
        lat: Range {
            min: edge(lat_range.min, lat_index, lat_scale),
            max: edge(lat_range.min, lat_index.wrapping_add(1), lat_scale),
        },
        lon: Range {
            min: edge(lon_range.min, lon_index, lon_scale),
            max: edge(lon_range.min, lon_index.wrapping_add(1), lon_scale),
        },
    })
}

/// The bits of a score, converted as x86-64 C converts a `double` to
/// `uint64_t`: truncated; a negative value wraps through `int64_t`; NaN,
/// values below -2^63 and values of 2^64 or more give what the processor's
/// conversion gives (2^63, or 0 above 2^64).
pub fn score_bits(score: f64) -> u64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    const INDEFINITE: u64 = 1 << 63;
    let signed = |v: f64| -> u64 {
        if v.is_nan() || !(-TWO_63..TWO_63).contains(&v) {
            INDEFINITE
        } else {
            v as i64 as u64
        }
    };
    if score >= TWO_63 {
        signed(score - TWO_63) ^ INDEFINITE
    } else {
        signed(score)
    }
}

/// The position a score stands for: the centre of its cell, kept inside
/// the encodable limits (a score no GEOADD wrote may fall outside them).
pub fn decode_score(score: f64) -> (f64, f64) {
    let cell = Cell {
        bits: score_bits(score),
        step: STEP_MAX,
    };
    // A cell of step 26 is never the zero cell.
    let area = decode(LON_RANGE, LAT_RANGE, cell).unwrap_or(Area {
        lon: LON_RANGE,
        lat: LAT_RANGE,
    });
    let lon = ((area.lon.min + area.lon.max) / 2.0).clamp(LON_MIN, LON_MAX);
    let lat = ((area.lat.min + area.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

/// GEOADD's score of a valid position (checked by the caller).
pub fn encode_score(lon: f64, lat: f64) -> u64 {
    encode(LON_RANGE, LAT_RANGE, lon, lat, STEP_MAX).map_or(0, Cell::align52)
}

/// GEOHASH's 11-character string of a score: its position re-encoded on
/// the standard ±90 latitudes, in base 32. 52 bits make ten characters and
/// two bits; the eleventh character is always `0`, as Redis prints it.
pub fn geohash_string(score: f64) -> [u8; 11] {
    let (lon, lat) = decode_score(score);
    let bits = encode(LON_RANGE, STANDARD_LAT_RANGE, lon, lat, STEP_MAX).map_or(0, |c| c.bits);
    let mut out = [b'0'; 11];
    for (i, c) in out.iter_mut().take(10).enumerate() {
        let index = (bits >> (52 - (i + 1) * 5)) & 0x1f;
        *c = BASE32[index as usize];
    }
    out
}

/// The cell one step east (`dx` 1) or west (`dx` -1) and north (`dy` 1)
/// or south (`dy` -1), wrapping around at the ranges' ends.
fn moved(cell: Cell, dx: i8, dy: i8) -> Cell {
    let shift = 64 - u32::from(cell.step) * 2;
    let odd = 0xAAAA_AAAA_AAAA_AAAAu64;
    let even = 0x5555_5555_5555_5555u64;
    // Adding 1 to the bits of one coordinate: the other coordinate's bits
    // are filled with ones so the carry runs through them.
    let step_bits = |bits: u64, other: u64, mask: u64, d: i8| -> u64 {
        let filler = other >> shift;
        let moved = if d > 0 {
            bits.wrapping_add(filler.wrapping_add(1))
        } else {
            (bits | filler).wrapping_sub(filler.wrapping_add(1))
        };
        moved & (mask >> shift)
    };
    let mut lon = cell.bits & odd;
    let mut lat = cell.bits & even;
    if dx != 0 {
        lon = step_bits(lon, even, odd, dx);
    }
    if dy != 0 {
        lat = step_bits(lat, odd, even, dy);
    }
    Cell {
        bits: lon | lat,
        step: cell.step,
    }
}

/// The area a search covers, around its centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Extent {
    /// BYRADIUS: a circle of this radius, in the query's unit.
    Radius(f64),
    /// BYBOX: a rectangle of this width and height, in the query's unit.
    Box { width: f64, height: f64 },
}

/// A search's shape: where it is centred, how far it reaches, and how many
/// metres the query's unit is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub lon: f64,
    pub lat: f64,
    pub extent: Extent,
    pub metres_per_unit: f64,
}

impl Shape {
    /// The box of longitudes and latitudes (min lon, min lat, max lon, max
    /// lat) the shape fits in. Meridians converge towards the poles, so the
    /// longitude span is taken at the shape's edge nearer the pole.
    fn bounds(&self) -> [f64; 4] {
        let (half_height, half_width) = match self.extent {
            Extent::Radius(r) => (r, r),
            Extent::Box { width, height } => (height / 2.0, width / 2.0),
        };
        let height = self.metres_per_unit * half_height;
        let width = self.metres_per_unit * half_width;
        let lat_delta = rad_deg(height / EARTH_RADIUS_M);
        let lon_delta_top = rad_deg(width / EARTH_RADIUS_M / deg_rad(self.lat + lat_delta).cos());
        let lon_delta_bottom =
            rad_deg(width / EARTH_RADIUS_M / deg_rad(self.lat - lat_delta).cos());
        let lon_delta = if self.lat < 0.0 {
            lon_delta_bottom
        } else {
            lon_delta_top
        };
        [
            self.lon - lon_delta,
            self.lat - lat_delta,
            self.lon + lon_delta,
            self.lat + lat_delta,
        ]
    }

    /// The distance from the centre to the farthest point of the shape, in
    /// metres (a box's corner).
    fn reach_m(&self) -> f64 {
        let reach = match self.extent {
            Extent::Radius(r) => r,
            Extent::Box { width, height } => {
                ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
            }
        };
        reach * self.metres_per_unit
    }

    /// The distance in metres from the centre to the position, if the
    /// shape contains it.
    pub fn contains(&self, lon: f64, lat: f64) -> Option<f64> {
        match self.extent {
            Extent::Radius(r) => {
                let d = distance(self.lon, self.lat, lon, lat);
                // NaN is not farther than the radius, as in C.
                match d.partial_cmp(&(r * self.metres_per_unit)) {
                    Some(std::cmp::Ordering::Greater) => None,
                    _ => Some(d),
                }
            }
            Extent::Box { width, height } => {
                // Within half the height north or south of the centre, and
                // half the width east or west along the point's parallel.
                let width_m = width * self.metres_per_unit;
                let height_m = height * self.metres_per_unit;
                if meridian_distance(lat, self.lat) > height_m / 2.0 {
                    return None;
                }
                if distance(lon, lat, self.lon, lat) > width_m / 2.0 {
                    return None;
                }
                Some(distance(self.lon, self.lat, lon, lat))
            }
        }
    }
}

/// How many bits per coordinate make a cell about as large as the search:
/// the cell and its eight neighbours then cover a circle of this radius.
pub fn estimate_step(reach_m: f64, lat: f64) -> u8 {
    if reach_m == 0.0 {
        return STEP_MAX;
    }
    let mut reach_m = reach_m;
    let mut step: i32 = 1;
    while reach_m < MERCATOR_MAX_M {
        reach_m *= 2.0;
        step += 1;
    }
    // One step coarser, so the reach is inside the nine cells in most
    // cases; coarser again near the poles, where cells narrow.
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, i32::from(STEP_MAX)) as u8
}

/// The nine cells a search reads, in Redis's order: the centre's, then
/// north, south, east, west, north-east, north-west, south-east and
/// south-west; a neighbour the shape cannot reach is [`Cell::NONE`].
pub fn search_cells(shape: &Shape) -> [Cell; 9] {
    let [min_lon, min_lat, max_lon, max_lat] = shape.bounds();
    let (lon, lat) = (shape.lon, shape.lat);
    let mut step = estimate_step(shape.reach_m(), lat);
    let area_of = |cell: Cell| decode(LON_RANGE, LAT_RANGE, cell);
    let cells_at = |step: u8| {
        let centre = encode(LON_RANGE, LAT_RANGE, lon, lat, step).unwrap_or(Cell { bits: 0, step });
        let around = [
            moved(centre, 0, 1),
            moved(centre, 0, -1),
            moved(centre, 1, 0),
            moved(centre, -1, 0),
            moved(centre, 1, 1),
            moved(centre, -1, 1),
            moved(centre, 1, -1),
            moved(centre, -1, -1),
        ];
        (centre, around)
    };
    let (mut centre, mut around) = cells_at(step);
    // Near a cell's edge the estimate can be one step too fine: a side
    // neighbour then ends before the shape does.
    let [north, south, east, west] = [0, 1, 2, 3].map(|i| area_of(around[i]));
    let too_fine = north.is_some_and(|a| a.lat.max < max_lat)
        || south.is_some_and(|a| a.lat.min > min_lat)
        || east.is_some_and(|a| a.lon.max < max_lon)
        || west.is_some_and(|a| a.lon.min > min_lon);
    if step > 1 && too_fine {
        step -= 1;
        (centre, around) = cells_at(step);
    }
    if step >= 2 {
        if let Some(area) = area_of(centre) {
            // Indexes into `around` of the cells on each side.
            let mut drop = |sides: [usize; 3]| sides.iter().for_each(|&i| around[i] = Cell::NONE);
            if area.lat.min < min_lat {
                drop([1, 7, 6]);
            }
            if area.lat.max > max_lat {
                drop([0, 4, 5]);
            }
            if area.lon.min < min_lon {
                drop([3, 7, 5]);
            }
            if area.lon.max > max_lon {
                drop([2, 6, 4]);
            }
        }
    }
    let mut out = [centre; 9];
    out[1..].copy_from_slice(&around);
    out
}

/// The distance in metres between two latitudes on one meridian.
fn meridian_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_M * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// The great-circle distance in metres between two positions (haversine on
/// a sphere of [`EARTH_RADIUS_M`]). On one meridian it is the arc between
/// the latitudes, which is what the haversine simplifies to there; Redis
/// takes that shortcut, and the two differ in the last bit.
pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let lon1r = deg_rad(lon1);
    let lon2r = deg_rad(lon2);
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return meridian_distance(lat1, lat2);
    }
    let lat1r = deg_rad(lat1);
    let lat2r = deg_rad(lat2);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores and strings redis-server 7.0.15 gives.
    #[test]
    fn known_positions_encode_as_redis_does() {
        assert_eq!(encode_score(13.361389, 38.115556), 3479099956230698);
        assert_eq!(encode_score(15.087269, 37.502669), 3479447370796909);
        assert_eq!(&geohash_string(3479099956230698.0), b"sqc8b49rny0");
        assert_eq!(&geohash_string(3479447370796909.0), b"sqdtr74hyu0");
        assert_eq!(
            &geohash_string(encode_score(-5.6, 42.6) as f64),
            b"ezs42e44yx0"
        );
        // The corners of the encodable world.
        assert_eq!(encode_score(-180.0, LAT_MIN), 0);
        assert_eq!(encode_score(0.0, 0.0), 3377699720527872);
        assert_eq!(encode_score(180.0, 0.0), 10133099161583616);
        assert_eq!(encode_score(180.0, LAT_MAX), 13510798882111488);
        assert_eq!(encode_score(-180.0, 0.0), 1125899906842624);
    }

    #[test]
    fn scores_decode_to_the_centre_of_their_cell() {
        let (lon, lat) = decode_score(3479099956230698.0);
        assert_eq!(
            meridian_resp::format_long_double(lon),
            "13.36138933897018433"
        );
        assert_eq!(
            meridian_resp::format_long_double(lat),
            "38.11555639549629859"
        );
        let (lon, lat) = decode_score(3377699720527872.0);
        assert_eq!(
            meridian_resp::format_long_double(lon),
            "0.00000268220901489"
        );
        assert_eq!(
            meridian_resp::format_long_double(lat),
            "0.00000126736058093"
        );
    }

    /// Every position encodes to a cell whose centre encodes back to it,
    /// within half a cell of where it was.
    #[test]
    fn encode_decode_round_trip() {
        let cell_lon = 360.0 / (1u64 << STEP_MAX) as f64;
        let cell_lat = (LAT_MAX - LAT_MIN) / (1u64 << STEP_MAX) as f64;
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..10_000 {
            let lon = LON_MIN + next() * 360.0;
            let lat = LAT_MIN + next() * (LAT_MAX - LAT_MIN);
            let score = encode_score(lon, lat);
            assert!(score < 1 << 52, "{lon} {lat}");
            let (dlon, dlat) = decode_score(score as f64);
            assert!((dlon - lon).abs() <= cell_lon / 2.0, "{lon} {dlon}");
            assert!((dlat - lat).abs() <= cell_lat / 2.0, "{lat} {dlat}");
            assert_eq!(encode_score(dlon, dlat), score);
        }
    }

    /// Scores no GEOADD writes decode as Redis decodes them on x86-64.
    #[test]
    fn foreign_scores_convert_as_c_does() {
        assert_eq!(score_bits(-1.0), u64::MAX);
        assert_eq!(score_bits(f64::INFINITY), 0);
        assert_eq!(score_bits(f64::NEG_INFINITY), 1 << 63);
        assert_eq!(score_bits(1e300), 0);
        assert_eq!(score_bits(0.5), 0);
        assert_eq!(score_bits(9_223_372_036_854_775_808.0), 1 << 63);
        let text = |s: f64| {
            let (lon, lat) = decode_score(s);
            (
                meridian_resp::format_long_double(lon),
                meridian_resp::format_long_double(lat),
            )
        };
        let max = ("180".to_owned(), "85.0511287799999991".to_owned());
        let min = (
            "-179.99999731779098511".to_owned(),
            "-85.05112751263942528".to_owned(),
        );
        assert_eq!(text(-1.0), max);
        assert_eq!(text(f64::INFINITY), min);
        assert_eq!(text(f64::NEG_INFINITY), ("180".to_owned(), min.1.clone()));
        assert_eq!(text((1u64 << 52) as f64), (min.0.clone(), max.1.clone()));
    }

    #[test]
    fn distances_match_redis() {
        let palermo = decode_score(3479099956230698.0);
        let catania = decode_score(3479447370796909.0);
        let d = distance(palermo.0, palermo.1, catania.0, catania.1);
        assert_eq!(format!("{:.4}", d), "166274.1516");
        assert_eq!(format!("{:.4}", d / 1000.0), "166.2742");
        assert_eq!(format!("{:.4}", d / 1609.34), "103.3182");
        assert_eq!(format!("{:.4}", d / 0.3048), "545518.8700");
        let origin = decode_score(3377699720527872.0);
        let east = decode_score(10133099161583616.0);
        let d = distance(origin.0, origin.1, east.0, east.1);
        assert_eq!(format!("{:.4}", d), "20020733.6202");
        // On one meridian: the arc, as Redis computes it (the haversine
        // gives 6027.1686871833199 km here).
        let south = decode_score(83281.0);
        let north = decode_score(299153147364624.0);
        let d = distance(south.0, south.1, north.0, north.1);
        assert_eq!(south.0, north.0);
        assert_eq!(
            meridian_resp::format_double(d / 1000.0),
            "6027.168687183319"
        );
    }

    #[test]
    fn neighbours_wrap_around_the_ranges() {
        let cell = Cell { bits: 0, step: 1 };
        // Step 1: four cells, lat in bit 0, lon in bit 1.
        assert_eq!(moved(cell, 1, 0).bits, 0b10);
        assert_eq!(moved(cell, -1, 0).bits, 0b10);
        assert_eq!(moved(cell, 0, 1).bits, 0b01);
        assert_eq!(moved(cell, 1, 1).bits, 0b11);
        let cell = Cell {
            bits: 0b0110,
            step: 2,
        };
        // lon = 0b10 (bits 3, 1), lat = 0b01 (bits 2, 0) read as (lat1 lat0) = (1, 0).
        let east = moved(cell, 1, 0);
        assert_eq!(gather(east.bits >> 1), gather(cell.bits >> 1) + 1);
        assert_eq!(gather(east.bits), gather(cell.bits));
        let south = moved(cell, 0, -1);
        assert_eq!(gather(south.bits), gather(cell.bits) - 1);
        assert_eq!(gather(south.bits >> 1), gather(cell.bits >> 1));
    }

    #[test]
    fn interleaving_round_trips() {
        for (lat, lon) in [(0u32, 0u32), (1, 0), (0, 1), (u32::MAX, 0), (12345, 67890)] {
            let bits = interleave(lat, lon);
            assert_eq!(gather(bits), lat);
            assert_eq!(gather(bits >> 1), lon);
        }
    }

    #[test]
    fn step_estimate_follows_redis() {
        assert_eq!(estimate_step(0.0, 0.0), 26);
        assert_eq!(estimate_step(MERCATOR_MAX_M, 0.0), 1);
        assert_eq!(estimate_step(1000.0, 0.0), 14);
        assert_eq!(estimate_step(1000.0, 70.0), 13);
        assert_eq!(estimate_step(1000.0, -85.0), 12);
        assert_eq!(estimate_step(0.001, 0.0), 26);
    }

    /// The search covers the shape: a point at the edge of a radius is in
    /// one of the nine cells.
    #[test]
    fn search_cells_cover_the_shape() {
        let shape = Shape {
            lon: 15.0,
            lat: 37.0,
            extent: Extent::Radius(200.0),
            metres_per_unit: 1000.0,
        };
        let cells = search_cells(&shape);
        let palermo = 3479099956230698.0;
        let covered = cells.iter().filter(|c| !c.is_none()).any(|c| {
            let (min, max) = c.score_span();
            (min..max).contains(&palermo)
        });
        assert!(covered);
        assert!(shape.contains(13.361389, 38.115556).is_some());
        assert!(shape.contains(12.0, 39.0).is_none());
    }
}
