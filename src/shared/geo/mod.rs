//! GeoIP: where a client address is, as a country and a continent.
//!
//! A MaxMind database (GeoLite2/GeoIP2, Country or City, `.mmdb`) is read
//! once and flattened into a [`GeoTable`]: per address family, the networks
//! sorted by first address, each with a small location id and its exact
//! prefix length. A lookup is a bucket index plus a binary search: no tree
//! walk, no record decoding, no heap allocation on the query path.
//!
//! Architecture invariant: this module knows MaxMind files, addresses and
//! the pool's continent names (`shared::zones`), nothing of DNS, snapshots
//! or the web layer. It turns an address into a [`GeoMatch`]; the answer code
//! decides what a location means (GB is the pool's `uk`, which zone to use).
//! It never panics on file contents: a corrupt database is a [`GeoError`].
//!
//! Memory: an IPv4 network costs 8 bytes (4 for its first address, 4 for
//! [`NetworkInfo`]), an IPv6 network 24 bytes (16 + 4, padded), plus the
//! bucket indexes (8 bytes a bucket: 8 MiB for IPv4, 512 KiB for IPv6 at
//! most). The 2018 GeoLite2-City (3.07M IPv4 + 0.35M IPv6 networks) takes
//! ~40 MiB. See [`GeoTable::heap_bytes`].

mod flatten;
pub mod mmdb_writer;
pub mod testdata;

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

pub use crate::shared::zones::Continent;

/// An ISO 3166-1 alpha-2 country code in lowercase ASCII, e.g. `*b"de"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode(pub [u8; 2]);

impl CountryCode {
    /// Accepts two ASCII letters in any case, as MaxMind writes them ("DE").
    pub fn from_iso_code(code: &[u8]) -> Option<CountryCode> {
        match code {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Some(CountryCode([
                a.to_ascii_lowercase(),
                b.to_ascii_lowercase(),
            ])),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        // The field is public, so the bytes are not guaranteed to be ASCII.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where geoipupdate and Debian's packages put the GeoLite2 Country file:
/// the database the DNS daemon and the web app use when none is given.
pub const DEFAULT_PATHS: [&str; 2] = [
    "/var/lib/GeoIP/GeoLite2-Country.mmdb",
    "/usr/share/GeoIP/GeoLite2-Country.mmdb",
];

/// The first of [`DEFAULT_PATHS`] that exists.
pub fn default_path() -> Option<std::path::PathBuf> {
    DEFAULT_PATHS
        .iter()
        .map(std::path::PathBuf::from)
        .find(|path| path.exists())
}

/// The location of an address, and how far that answer reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeoMatch {
    /// None when the network has no country (or the address is in no network).
    pub country: Option<CountryCode>,
    pub continent: Option<Continent>,
    /// In the address family that was looked up (IPv4: 0..=32, IPv6:
    /// 0..=128). In a network: that network's prefix length (the ECS scope).
    /// In no network: the shortest prefix whose aligned block around the
    /// address holds no network, so a cache may reuse "no location" for
    /// the whole block.
    pub prefix_len: u8,
}

impl GeoMatch {
    /// No location, valid for the aligned block of `prefix_len` bits.
    pub const fn nowhere(prefix_len: u8) -> GeoMatch {
        GeoMatch {
            country: None,
            continent: None,
            prefix_len,
        }
    }
}

/// Why a database could not be loaded.
#[derive(Debug)]
pub enum GeoError {
    /// The file could not be read.
    Read {
        source_name: String,
        error: std::io::Error,
    },
    /// The bytes are not a usable MaxMind database.
    Invalid { source_name: String, detail: String },
}

impl GeoError {
    pub(crate) fn invalid(source_name: &str, detail: impl Into<String>) -> GeoError {
        GeoError::Invalid {
            source_name: source_name.to_owned(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for GeoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeoError::Read { source_name, error } => {
                write!(f, "GeoIP database {source_name}: cannot read: {error}")
            }
            GeoError::Invalid {
                source_name,
                detail,
            } => write!(f, "GeoIP database {source_name}: invalid: {detail}"),
        }
    }
}

impl std::error::Error for GeoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GeoError::Read { error, .. } => Some(error),
            GeoError::Invalid { .. } => None,
        }
    }
}

/// A country and continent pair; networks refer to it by a `u16` id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Location {
    pub(crate) country: Option<CountryCode>,
    pub(crate) continent: Option<Continent>,
}

/// `NetworkInfo::location` of an IPv6 range that MaxMind maps onto the IPv4
/// space (::/96, ::ffff:0:0/96, 2001::/32 Teredo, 2002::/16 6to4): the 32
/// bits after the range's prefix are an IPv4 address to look up instead.
pub(crate) const ALIAS_TO_IPV4: u16 = u16::MAX;

/// What the table keeps per network besides its first address: 4 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NetworkInfo {
    /// Index into `GeoTable::locations`, or [`ALIAS_TO_IPV4`].
    pub(crate) location: u16,
    pub(crate) prefix_len: u8,
}

/// Address arithmetic shared by the IPv4 (`u32`) and IPv6 (`u128`) tables.
pub(crate) trait Address: Copy + Ord {
    const BITS: u8;
    /// At most how many top bits pick a bucket of the index (see
    /// [`FamilyTable`]).
    const MAX_BUCKET_BITS: u32;
    fn to_ip(self) -> IpAddr;
    /// The top `bucket_bits` bits (1..=MAX_BUCKET_BITS): the bucket index.
    fn bucket(self, bucket_bits: u32) -> usize;
    /// The first address of a bucket.
    fn bucket_start(bucket: usize, bucket_bits: u32) -> Self;
    /// The last address of the network starting at `self`.
    fn last_in_network(self, prefix_len: u8) -> Self;
    /// True when no bit past `prefix_len` is set.
    fn is_network_start(self, prefix_len: u8) -> bool;
    /// How many leading bits `self` and `other` share.
    fn common_prefix_len(self, other: Self) -> u8;
}

impl Address for u32 {
    const BITS: u8 = 32;
    /// Up to 2^20 buckets (4 MiB of index): the real database has ~3M IPv4
    /// networks, so a bucket holds ~3 and the search reads one cache line.
    const MAX_BUCKET_BITS: u32 = 20;
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(self.into())
    }
    fn bucket(self, bucket_bits: u32) -> usize {
        (self >> (32 - bucket_bits)) as usize
    }
    fn bucket_start(bucket: usize, bucket_bits: u32) -> u32 {
        (bucket as u32) << (32 - bucket_bits)
    }
    fn last_in_network(self, prefix_len: u8) -> u32 {
        self | u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0)
    }
    fn is_network_start(self, prefix_len: u8) -> bool {
        self & !u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0) == self
    }
    fn common_prefix_len(self, other: u32) -> u8 {
        (self ^ other).leading_zeros() as u8
    }
}

impl Address for u128 {
    const BITS: u8 = 128;
    /// Up to 2^16 buckets (256 KiB): IPv6 networks crowd in a few /12s, so
    /// finer top bits would mostly add empty buckets.
    const MAX_BUCKET_BITS: u32 = 16;
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(self.into())
    }
    fn bucket(self, bucket_bits: u32) -> usize {
        (self >> (128 - bucket_bits)) as usize
    }
    fn bucket_start(bucket: usize, bucket_bits: u32) -> u128 {
        (bucket as u128) << (128 - bucket_bits)
    }
    fn last_in_network(self, prefix_len: u8) -> u128 {
        self | u128::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0)
    }
    fn is_network_start(self, prefix_len: u8) -> bool {
        self & !u128::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0) == self
    }
    fn common_prefix_len(self, other: u128) -> u8 {
        (self ^ other).leading_zeros() as u8
    }
}

/// Where an address falls in one family's table.
#[derive(Clone, Copy)]
enum Position {
    InNetwork(NetworkInfo),
    /// In no network; the largest empty aligned block has this prefix.
    Gap {
        prefix_len: u8,
    },
}

/// One network of a family table: 8 bytes for IPv4, 24 for IPv6.
///
/// The first address and the info sit side by side so the last step of the
/// search and the read of the info hit the same cache line. `packed(8)`
/// caps the alignment of `u128` (16) at 8, so an IPv6 entry takes 16 + 4
/// rounded to 24 bytes instead of 32. Fields are only read by value (a
/// reference to a packed field would be refused by the compiler).
#[derive(Clone, Copy)]
#[repr(C, packed(8))]
struct Entry<A> {
    start: A,
    info: NetworkInfo,
}

/// One bucket of a family's index, 8 bytes. Low 32 bits: how many networks
/// start before the bucket's first address. High 32 bits: 0, or, when one
/// network or one gap covers the whole bucket, that answer
/// ([`DIRECT_ANSWER`] | [`DIRECT_GAP`]? | prefix_len << 16 | location), so
/// most lookups read the index and nothing else (one cache miss, not two:
/// 75% of the IPv4 space with the 2018 GeoLite2-City and 2^20 buckets).
type Bucket = u64;

const DIRECT_ANSWER: u32 = 1 << 31;
const DIRECT_GAP: u32 = 1 << 30;

fn direct_answer(position: Position) -> u32 {
    match position {
        Position::InNetwork(info) => {
            DIRECT_ANSWER | u32::from(info.prefix_len) << 16 | u32::from(info.location)
        }
        Position::Gap { prefix_len } => DIRECT_ANSWER | DIRECT_GAP | u32::from(prefix_len) << 16,
    }
}

/// One address family: disjoint networks sorted by first address, and an
/// index by the top `bucket_bits` bits that answers uniform buckets itself
/// and otherwise bounds the binary search to the networks starting in the
/// address's bucket.
pub(crate) struct FamilyTable<A> {
    entries: Vec<Entry<A>>,
    /// About log2(networks), at most `A::MAX_BUCKET_BITS`: ~1 network per
    /// bucket, and a small table gets a small index.
    bucket_bits: u32,
    /// 2^bucket_bits + 1 buckets (the last one only bounds the one before),
    /// or none for an empty table.
    buckets: Vec<Bucket>,
}

impl<A: Address> FamilyTable<A> {
    fn empty() -> FamilyTable<A> {
        FamilyTable {
            entries: Vec::new(),
            bucket_bits: 1,
            buckets: Vec::new(),
        }
    }

    /// `networks` must be sorted by start and disjoint (the builder checks).
    fn from_sorted(networks: Vec<(A, NetworkInfo)>) -> FamilyTable<A> {
        if networks.is_empty() {
            return FamilyTable::empty();
        }
        let entries: Vec<Entry<A>> = networks
            .into_iter()
            .map(|(start, info)| Entry { start, info })
            .collect();
        let bucket_bits =
            (usize::BITS - entries.len().leading_zeros()).clamp(1, A::MAX_BUCKET_BITS);
        let bucket_count = 1usize << bucket_bits;
        let mut buckets = Vec::with_capacity(bucket_count + 1);
        let mut before = 0usize;
        for bucket in 0..bucket_count {
            let bucket_start = A::bucket_start(bucket, bucket_bits);
            while entries.get(before).is_some_and(|entry| {
                let start = entry.start;
                start < bucket_start
            }) {
                before += 1;
            }
            buckets.push(before as Bucket);
        }
        buckets.push(entries.len() as Bucket);
        let mut table = FamilyTable {
            entries: on_huge_pages(entries),
            bucket_bits,
            buckets: on_huge_pages(buckets),
        };

        // A bucket is uniform when the answer for its first address reaches
        // over the whole bucket (prefix no longer than the bucket's).
        for bucket in 0..bucket_count {
            let position = table.locate(A::bucket_start(bucket, bucket_bits));
            let prefix_len = match position {
                Position::InNetwork(info) => info.prefix_len,
                Position::Gap { prefix_len } => prefix_len,
            };
            if u32::from(prefix_len) <= bucket_bits {
                table.buckets[bucket] |= Bucket::from(direct_answer(position)) << 32;
            }
        }
        table
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn heap_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry<A>>()
            + self.buckets.capacity() * size_of::<Bucket>()
    }

    #[inline]
    fn locate(&self, addr: A) -> Position {
        let bucket = addr.bucket(self.bucket_bits);
        let Some(&this_bucket) = self.buckets.get(bucket) else {
            return Position::Gap { prefix_len: 0 };
        };
        let answer = (this_bucket >> 32) as u32;
        if answer & DIRECT_ANSWER != 0 {
            let prefix_len = (answer >> 16) as u8;
            return if answer & DIRECT_GAP != 0 {
                Position::Gap { prefix_len }
            } else {
                Position::InNetwork(NetworkInfo {
                    location: answer as u16,
                    prefix_len,
                })
            };
        }
        let low = this_bucket as u32 as usize;
        let high = self
            .buckets
            .get(bucket + 1)
            .map_or(self.entries.len(), |&next| next as u32 as usize);
        // Networks before `low` start below this bucket, those from `high`
        // on start in a later one: only `low..high` can start past `addr`.
        let Some(bucket_entries) = self.entries.get(low..high) else {
            return Position::Gap { prefix_len: 0 };
        };
        let after = low
            + bucket_entries.partition_point(|entry| {
                let start = entry.start;
                start <= addr
            });

        let mut gap_prefix_len = 0;
        if let Some(&Entry { start, info }) = after.checked_sub(1).and_then(|i| self.entries.get(i))
        {
            let last = start.last_in_network(info.prefix_len);
            if addr <= last {
                return Position::InNetwork(info);
            }
            // The block must not reach back to the previous network's end.
            gap_prefix_len = last.common_prefix_len(addr) + 1;
        }
        if let Some(&Entry {
            start: next_start, ..
        }) = self.entries.get(after)
        {
            // ... nor forward to the next network's start.
            gap_prefix_len = gap_prefix_len.max(next_start.common_prefix_len(addr) + 1);
        }
        Position::Gap {
            prefix_len: gap_prefix_len,
        }
    }
}

/// Size of a transparent huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// The same elements in a new buffer whose memory the kernel is asked to
/// back with transparent huge pages (`madvise(MADV_HUGEPAGE)`, before the
/// pages are first touched). The real GeoLite2 table is ~40 MB read at
/// random, one lookup per query: with 4 KiB pages nearly every lookup also
/// misses the TLB, with 2 MiB pages the whole table fits in it. Small
/// tables, and kernels without THP, keep ordinary pages.
fn on_huge_pages<T: Copy>(elements: Vec<T>) -> Vec<T> {
    let bytes = elements.len() * size_of::<T>();
    if bytes < 2 * HUGE_PAGE {
        return elements;
    }
    // Room to start the advised region on a huge-page boundary.
    let mut moved: Vec<T> = Vec::with_capacity(elements.len() + HUGE_PAGE / size_of::<T>().max(1));
    let start = moved.as_mut_ptr() as usize;
    let end = start + moved.capacity() * size_of::<T>();
    let aligned_start = start.next_multiple_of(HUGE_PAGE);
    let aligned_end = end / HUGE_PAGE * HUGE_PAGE;
    if aligned_end > aligned_start {
        // SAFETY: the range lies inside `moved`'s own allocation (aligned
        // inward), which stays allocated while the advice matters; madvise
        // only changes how the kernel backs those pages, never their
        // contents or the allocation, and a failure (no THP) is harmless.
        unsafe {
            libc::madvise(
                aligned_start as *mut libc::c_void,
                aligned_end - aligned_start,
                libc::MADV_HUGEPAGE,
            );
        }
    }
    moved.extend_from_slice(&elements);
    moved
}

/// A flattened GeoIP database. Immutable; build a new one to reload.
pub struct GeoTable {
    v4: FamilyTable<u32>,
    v6: FamilyTable<u128>,
    locations: Vec<Location>,
    network_count: usize,
    description: String,
}

impl fmt::Debug for GeoTable {
    // Not derived: millions of entries are no use in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoTable")
            .field("description", &self.description)
            .field("ipv4_entries", &self.v4.len())
            .field("ipv6_entries", &self.v6.len())
            .field("locations", &self.locations.len())
            .finish()
    }
}

impl GeoTable {
    /// Reads, validates and flattens a MaxMind database file.
    pub fn open(path: &Path) -> Result<GeoTable, GeoError> {
        let source_name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| GeoError::Read {
            source_name: source_name.clone(),
            error,
        })?;
        GeoTable::from_bytes(bytes, &source_name)
    }

    /// Flattens a MaxMind database held in memory; `source` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, source: &str) -> Result<GeoTable, GeoError> {
        flatten::flatten(bytes, source)
    }

    /// No database: every lookup is "no location" for the whole space.
    pub fn empty() -> GeoTable {
        GeoTable {
            v4: FamilyTable::empty(),
            v6: FamilyTable::empty(),
            locations: Vec::new(),
            network_count: 0,
            description: "no GeoIP database".to_owned(),
        }
    }

    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> GeoMatch {
        match addr {
            IpAddr::V4(v4) => self.lookup_v4(u32::from(v4)),
            IpAddr::V6(v6) => self.lookup_v6(u128::from(v6)),
        }
    }

    #[inline]
    pub fn lookup_v4(&self, addr: u32) -> GeoMatch {
        match self.v4.locate(addr) {
            Position::InNetwork(info) => self.network_match(info),
            Position::Gap { prefix_len } => GeoMatch::nowhere(prefix_len),
        }
    }

    /// IPv4-mapped addresses (::ffff:a.b.c.d, always), and the other ranges
    /// the database aliases to IPv4 (::/96, 2001::/32 Teredo, 2002::/16
    /// 6to4, when the file has them), are looked up as IPv4. The prefix
    /// length stays in IPv6 bits: the range's prefix + the IPv4 one, e.g.
    /// ::ffff:81.2.69.1 in 81.2.69.0/24 gives 96 + 24 = 120, as
    /// `maxminddb::Reader::lookup` reports it.
    #[inline]
    pub fn lookup_v6(&self, addr: u128) -> GeoMatch {
        match self.v6.locate(addr) {
            Position::InNetwork(info) if info.location == ALIAS_TO_IPV4 => {
                // The builder only makes aliases of prefix length <= 96.
                let shift = 96u32.saturating_sub(u32::from(info.prefix_len));
                let ipv4 = (addr >> shift) as u32;
                let inner = self.lookup_v4(ipv4);
                GeoMatch {
                    prefix_len: info.prefix_len + inner.prefix_len,
                    ..inner
                }
            }
            Position::InNetwork(info) => self.network_match(info),
            Position::Gap { prefix_len } => GeoMatch::nowhere(prefix_len),
        }
    }

    #[inline]
    fn network_match(&self, info: NetworkInfo) -> GeoMatch {
        let location = self
            .locations
            .get(usize::from(info.location))
            .copied()
            .unwrap_or_default();
        GeoMatch {
            country: location.country,
            continent: location.continent,
            prefix_len: info.prefix_len,
        }
    }

    /// Networks with data in the database (IPv4 + IPv6, aliases not counted).
    pub fn network_count(&self) -> usize {
        self.network_count
    }

    /// E.g. "GeoLite2-City built 2018-07-03, 3.1M networks ...", for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// For every country in the database: its continent, and the largest
    /// IPv4 and IPv6 network located there (for benchmarks and demos that
    /// need a client address in each country). Not for the hot path.
    pub fn country_networks(&self) -> Vec<CountryNetworks> {
        let mut by_location: Vec<Option<CountryNetworks>> = vec![None; self.locations.len()];
        fn consider<A: Address>(
            table: &FamilyTable<A>,
            locations: &[Location],
            by_location: &mut [Option<CountryNetworks>],
        ) {
            for entry in &table.entries {
                let (start, info) = (entry.start, entry.info);
                let Some(location) = locations.get(usize::from(info.location)) else {
                    continue;
                };
                let Some(country) = location.country else {
                    continue;
                };
                let slot = &mut by_location[usize::from(info.location)];
                let found = slot.get_or_insert(CountryNetworks {
                    country,
                    continent: location.continent,
                    v4: None,
                    v6: None,
                });
                // The address type says the family: u128 is IPv6.
                let best = if A::BITS == 128 {
                    &mut found.v6
                } else {
                    &mut found.v4
                };
                if best.is_none_or(|(_, prefix)| info.prefix_len < prefix) {
                    *best = Some((start.to_ip(), info.prefix_len));
                }
            }
        }
        consider(&self.v4, &self.locations, &mut by_location);
        consider(&self.v6, &self.locations, &mut by_location);
        // Several locations can share a country (different continents in
        // odd records); keep one entry per country.
        let mut merged: Vec<CountryNetworks> = Vec::new();
        for found in by_location.into_iter().flatten() {
            match merged.iter_mut().find(|m| m.country == found.country) {
                Some(existing) => {
                    if existing.v4.is_none() {
                        existing.v4 = found.v4;
                    }
                    if existing.v6.is_none() {
                        existing.v6 = found.v6;
                    }
                }
                None => merged.push(found),
            }
        }
        merged.sort_by_key(|m| m.country.0);
        merged
    }

    /// Heap memory held by the table, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes()
            + self.v6.heap_bytes()
            + self.locations.capacity() * size_of::<Location>()
            + self.description.capacity()
    }
}

/// A country of the database with a sample network of each family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountryNetworks {
    pub country: CountryCode,
    pub continent: Option<Continent>,
    /// The largest network of the country: (first address, prefix length).
    pub v4: Option<(IpAddr, u8)>,
    pub v6: Option<(IpAddr, u8)>,
}

/// Collects networks during flattening, then sorts and checks them.
pub(crate) struct TableBuilder {
    v4: Vec<(u32, NetworkInfo)>,
    v6: Vec<(u128, NetworkInfo)>,
    locations: Vec<Location>,
    location_ids: std::collections::HashMap<Location, u16>,
}

impl TableBuilder {
    pub(crate) fn new() -> TableBuilder {
        TableBuilder {
            v4: Vec::new(),
            v6: Vec::new(),
            locations: Vec::new(),
            location_ids: std::collections::HashMap::new(),
        }
    }

    pub(crate) fn location_id(&mut self, location: Location) -> Result<u16, String> {
        if let Some(&id) = self.location_ids.get(&location) {
            return Ok(id);
        }
        let id = u16::try_from(self.locations.len())
            .ok()
            .filter(|&id| id != ALIAS_TO_IPV4)
            .ok_or("more than 65 534 distinct country/continent pairs")?;
        self.locations.push(location);
        self.location_ids.insert(location, id);
        Ok(id)
    }

    pub(crate) fn has_v4(&self) -> bool {
        !self.v4.is_empty()
    }

    pub(crate) fn push_v4(&mut self, start: u32, prefix_len: u8, location: u16) {
        self.v4.push((
            start,
            NetworkInfo {
                location,
                prefix_len,
            },
        ));
    }

    pub(crate) fn push_v6(&mut self, start: u128, prefix_len: u8, location: u16) {
        self.v6.push((
            start,
            NetworkInfo {
                location,
                prefix_len,
            },
        ));
    }

    /// Sorts, checks that networks are aligned and disjoint, then adds the
    /// IPv6 alias ranges that do not collide with a real IPv6 network.
    pub(crate) fn build(
        mut self,
        aliases: &[(u128, u8)],
        description: impl FnOnce(usize, usize) -> String,
    ) -> Result<GeoTable, String> {
        let v4 = sorted_disjoint(std::mem::take(&mut self.v4), "IPv4")?;
        let mut v6 = sorted_disjoint(std::mem::take(&mut self.v6), "IPv6")?;
        let network_count = v4.len() + v6.len();
        let description = description(v4.len(), v6.len());

        for &(alias_start, alias_prefix_len) in aliases {
            if alias_prefix_len > 96 || !alias_start.is_network_start(alias_prefix_len) {
                return Err(format!(
                    "internal: bad IPv4 alias {}/{alias_prefix_len}",
                    alias_start.to_ip()
                ));
            }
            let alias_last = alias_start.last_in_network(alias_prefix_len);
            let collides = v6.iter().any(|&(start, info)| {
                start <= alias_last && alias_start <= start.last_in_network(info.prefix_len)
            });
            if !collides {
                v6.push((
                    alias_start,
                    NetworkInfo {
                        location: ALIAS_TO_IPV4,
                        prefix_len: alias_prefix_len,
                    },
                ));
            }
        }
        let v6 = sorted_disjoint(v6, "IPv6")?;

        Ok(GeoTable {
            v4: FamilyTable::from_sorted(v4),
            v6: FamilyTable::from_sorted(v6),
            locations: self.locations,
            network_count,
            description,
        })
    }
}

fn sorted_disjoint<A: Address>(
    mut networks: Vec<(A, NetworkInfo)>,
    family: &str,
) -> Result<Vec<(A, NetworkInfo)>, String> {
    networks.sort_unstable_by_key(|&(start, _)| start);
    let mut previous_last: Option<A> = None;
    for &(start, info) in &networks {
        if info.prefix_len > A::BITS || !start.is_network_start(info.prefix_len) {
            return Err(format!(
                "{family} network {}/{} is not aligned on its prefix",
                start.to_ip(),
                info.prefix_len
            ));
        }
        if previous_last.is_some_and(|last| start <= last) {
            return Err(format!(
                "{family} network {}/{} overlaps the previous one",
                start.to_ip(),
                info.prefix_len
            ));
        }
        previous_last = Some(start.last_in_network(info.prefix_len));
    }
    networks.shrink_to_fit();
    Ok(networks)
}

#[cfg(test)]
mod tests;
