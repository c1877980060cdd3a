//! Weighted random sampling with inclusion probability proportional to
//! weight ("πps" sampling), exact, with no allocation.
//!
//! NTP clients use every address of an answer (chrony's and ntpd's `pool`
//! take up to four), so a server's load is its share of *all* addresses
//! handed out. For an answer of `k` addresses from a list of total weight
//! `W`, each server is in an answer with probability `min(1, k·w/W)`: a
//! server whose `k·w/W` is 1 or more is in every answer and the surplus is
//! spread over the others in proportion to their weights (their
//! probabilities are worked out again without it, as often as needed).
//! Where no server is capped, a server's share of all addresses equals
//! its share of the weights. (Successive weighted draws, which this
//! replaced, flatten that: small servers got up to 40% more than their
//! share, large ones less.)
//!
//! The draw is systematic sampling: the servers not capped are laid end to
//! end on a line, each as long as its weight; one uniform random start `u`
//! in `[0, W')` and `k'` points `u/k', (u + W')/k', ...` spaced `W'/k'`
//! apart pick the servers they land in. No server is longer than the
//! spacing, so no server is picked twice, and a server is picked exactly
//! with probability `k'·w/W'`: counted in integers (the line is scaled by
//! `k'`), nothing is rounded. The order on the line is fixed at load: by
//! weight, heaviest first (so the capped servers are a prefix of the list
//! and nothing has to be sorted per query), ties by server. The order only
//! shapes which servers appear *together* (one from each stretch of the
//! line, like a stratified sample); the caller shuffles the addresses it
//! writes, so no position in an answer favours a stretch.
//!
//! Top-up: a draw can exclude servers already taken from another list (a
//! child zone's); they are taken off the line (found by their weight and
//! server in the sorted list) and the probabilities are those of the list
//! without them.
//!
//! Finding the server a point lands in: a list of at most `MAX_PICKS`
//! servers is scanned; a longer one has a guide table (Chen and Asau): the
//! line cut into up to `2n` equal buckets, each with the first server it
//! starts in, so a point is one bucket read and a short search.
//!
//! Layout: a list is one array of 16-byte columns (server, weight, the
//! weight before it on the line), so the first cache line of a list holds
//! its heaviest servers, which the capping reads.
//!
//! Architecture invariant: this module knows weights and indexes, not DNS.

use rand::Rng;

/// The largest answer any origin may ask for; bounds [`Picked`].
pub const MAX_PICKS: usize = crate::shared::snapshot::MAX_HOSTS_LIMIT;

/// Longest list accepted: it keeps every sum of weights, times an answer's
/// size, in 64 bits (2^32 · 2^26 · 16 = 2^62).
const MAX_LIST_LEN: usize = 1 << 26;

/// Servers picked for one answer (indexes into the table's server list),
/// on the stack.
#[derive(Clone, Copy, Debug)]
pub struct Picked {
    ids: [u32; MAX_PICKS],
    len: usize,
}

/// Equal when the same servers were picked in the same order (the unused
/// tail of the array does not count).
impl PartialEq for Picked {
    fn eq(&self, other: &Picked) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Picked {}

impl Default for Picked {
    fn default() -> Self {
        Self::new()
    }
}

impl Picked {
    pub const fn new() -> Self {
        Picked {
            ids: [0; MAX_PICKS],
            len: 0,
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[u32] {
        &self.ids[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn contains(&self, id: u32) -> bool {
        self.as_slice().contains(&id)
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// The servers one answer has taken so far, with their weights (a list
/// finds an excluded server by its weight).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    picked: Picked,
    weights: [u32; MAX_PICKS],
}

impl Sample {
    pub const fn new() -> Self {
        Sample {
            picked: Picked::new(),
            weights: [0; MAX_PICKS],
        }
    }

    pub fn len(&self) -> usize {
        self.picked.len
    }

    pub fn is_empty(&self) -> bool {
        self.picked.len == 0
    }

    pub fn picked(&self) -> &Picked {
        &self.picked
    }

    #[inline]
    fn push(&mut self, server: u32, weight: u32) {
        let len = self.picked.len;
        if len < MAX_PICKS {
            self.picked.ids[len] = server;
            self.weights[len] = weight;
            self.picked.len += 1;
        }
    }

    /// Put the servers in a uniformly random order (Fisher-Yates): the
    /// draws leave them in their lists' order, heaviest first, and many
    /// clients use the first address only.
    pub fn shuffle<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        for i in (1..self.picked.len).rev() {
            let j = uniform_below(rng, i as u64 + 1) as usize;
            self.picked.ids.swap(i, j);
            self.weights.swap(i, j);
        }
    }
}

/// One column of a list: a server, its weight and where it starts on the
/// list's line (the weights of the columns before it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(16))]
struct Column {
    /// An index into the table's server list.
    server: u32,
    weight: u32,
    before: u64,
}

impl Column {
    #[inline]
    fn end(&self) -> u64 {
        self.before + u64::from(self.weight)
    }
}

/// Where a list is in its [`CandidateLists`], with its total weight: 16
/// bytes, kept by the zone table next to the list's zone and label, so a
/// draw reads the list's columns and no header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListId {
    start: u32,
    len: u32,
    total_weight: u64,
}

impl ListId {
    /// The empty list.
    pub const EMPTY: ListId = ListId {
        start: 0,
        len: 0,
        total_weight: 0,
    };
}

/// All candidate lists of a zone table in one array of 16-byte columns,
/// list after list, and the guide tables of the long ones (a list starting
/// at column `s` has its guide at `2s`, at most `2n` entries).
#[derive(Clone, Debug)]
pub struct CandidateLists {
    columns: Box<[Column]>,
    guides: Box<[u32]>,
}

/// Bits needed for `value` (0 for 0).
#[inline]
fn bits(value: u64) -> u32 {
    u64::BITS - value.leading_zeros()
}

/// The guide of a list of `len` columns and total weight `total`: bucket
/// `b` covers the line's positions `b << shift ..`; there are at most
/// `2 * len` buckets.
#[inline]
fn guide_shape(len: usize, total: u64) -> (u32, usize) {
    let shift = bits(total).saturating_sub(bits(len as u64));
    let buckets = ((total.saturating_sub(1)) >> shift) as usize + 1;
    (shift, buckets)
}

/// Builds a [`CandidateLists`].
#[derive(Debug, Default)]
pub struct ListsBuilder {
    columns: Vec<Column>,
    guides: Vec<u32>,
}

impl ListsBuilder {
    pub fn new() -> ListsBuilder {
        ListsBuilder::default()
    }

    /// Add a list from (server index, weight) pairs; weights of 0 count as
    /// 1, a server given twice counts once. An empty list is
    /// [`ListId::EMPTY`].
    pub fn push(&mut self, mut entries: Vec<(u32, u32)>) -> ListId {
        entries.sort_unstable_by_key(|&(server, _)| server);
        entries.dedup_by_key(|&mut (server, _)| server);
        entries.truncate(MAX_LIST_LEN);
        if entries.is_empty() {
            return ListId::EMPTY;
        }
        for entry in &mut entries {
            entry.1 = entry.1.max(1);
        }
        // Heaviest first, ties by server: the order of the line.
        entries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let start = self.columns.len();
        let mut before = 0u64;
        for &(server, weight) in &entries {
            self.columns.push(Column {
                server,
                weight,
                before,
            });
            before += u64::from(weight);
        }
        let total_weight = before;
        let len = entries.len();
        self.guides.resize(2 * self.columns.len(), 0);
        if len > MAX_PICKS {
            let columns = &self.columns[start..];
            let (shift, buckets) = guide_shape(len, total_weight);
            let guide = &mut self.guides[2 * start..2 * start + buckets];
            let mut column = 0;
            for (bucket, slot) in guide.iter_mut().enumerate() {
                let position = (bucket as u64) << shift;
                while columns[column].end() <= position {
                    column += 1;
                }
                *slot = column as u32;
            }
        }
        ListId {
            start: start as u32,
            len: len as u32,
            total_weight,
        }
    }

    pub fn finish(self) -> CandidateLists {
        CandidateLists {
            columns: self.columns.into(),
            guides: self.guides.into(),
        }
    }
}

impl CandidateLists {
    /// The list `id`; an empty list for an id not made by this set's
    /// builder.
    #[inline]
    pub fn get(&self, id: ListId) -> Candidates<'_> {
        let start = id.start as usize;
        let len = id.len as usize;
        let guide = if len > MAX_PICKS {
            self.guides.get(2 * start..2 * start + 2 * len)
        } else {
            Some(&[][..])
        };
        match (self.columns.get(start..start + len), guide) {
            (Some(columns), Some(guide)) => Candidates {
                columns,
                guide,
                total_weight: id.total_weight,
            },
            _ => Candidates::default(),
        }
    }

    /// Heap memory held, in bytes.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.columns) + std::mem::size_of_val(&*self.guides)
    }
}

/// One list of a [`CandidateLists`]: weighted servers on their line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Candidates<'a> {
    columns: &'a [Column],
    guide: &'a [u32],
    total_weight: u64,
}

/// Room for the positions a draw takes off a list's line: the servers
/// already in the sample and the capped ones.
const REMOVED: usize = 2 * MAX_PICKS;

impl<'a> Candidates<'a> {
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The servers of the list, heaviest first.
    pub fn servers(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.columns.iter().map(|column| column.server)
    }

    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// Where `server` of weight `weight` is in this list, if it is.
    #[inline]
    fn position(&self, server: u32, weight: u32) -> Option<usize> {
        self.columns
            .binary_search_by(|column| weight.cmp(&column.weight).then(column.server.cmp(&server)))
            .ok()
    }

    /// The column a position of the line falls in (`position` below the
    /// total weight).
    #[inline]
    fn column_at(&self, position: u64) -> usize {
        let columns = self.columns;
        let (mut low, mut high) = if self.guide.is_empty() {
            (0, columns.len() - 1)
        } else {
            let (shift, buckets) = guide_shape(columns.len(), self.total_weight);
            let bucket = (position >> shift) as usize;
            let low = self.guide.get(bucket).copied().unwrap_or(0) as usize;
            let high = match self.guide.get(bucket + 1) {
                Some(&next) if bucket + 1 < buckets => next as usize,
                _ => columns.len() - 1,
            };
            (low, high.min(columns.len() - 1))
        };
        // The last column starting at or before the position.
        while low < high {
            let middle = (low + high).div_ceil(2);
            if columns[middle].before <= position {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        low
    }

    /// Add up to `want` servers of this list to `sample`, none already in
    /// it: each with probability min(1, want·w/W) among the list's servers
    /// not in the sample (see the module documentation). With no more
    /// than `want` of them left, all are taken.
    pub fn draw_into<R: Rng + ?Sized>(&self, rng: &mut R, want: usize, sample: &mut Sample) {
        self.draw_with_start(want, sample, |line| uniform_below(rng, line));
    }

    /// [`Candidates::draw_into`] with the random start on the line (below
    /// `line`, its argument) chosen by `start_below`: the tests enumerate
    /// every start to check the law exactly.
    fn draw_with_start(
        &self,
        want: usize,
        sample: &mut Sample,
        start_below: impl FnOnce(u64) -> u64,
    ) {
        let mut want = want.min(MAX_PICKS - sample.len());
        if want == 0 || self.columns.is_empty() {
            return;
        }
        // Off the line: the servers already taken (from another list).
        let mut removed = [0usize; REMOVED];
        let mut removed_count = 0;
        let mut line = self.total_weight;
        for (&server, &weight) in sample.picked.as_slice().iter().zip(&sample.weights) {
            if let Some(position) = self.position(server, weight) {
                removed[removed_count] = position;
                removed_count += 1;
                line -= u64::from(weight);
            }
        }
        let excluded = removed_count;
        if self.columns.len() - excluded <= want {
            for (position, column) in self.columns.iter().enumerate() {
                if !removed[..excluded].contains(&position) {
                    sample.push(column.server, column.weight);
                }
            }
            return;
        }
        // Capping: a server whose want·w reaches the line is in every
        // answer; then the rest are weighed again. The heaviest come
        // first, so the capped ones are a prefix (less the excluded).
        for (position, column) in self.columns.iter().enumerate() {
            if removed[..excluded].contains(&position) {
                continue;
            }
            let weight = u64::from(column.weight);
            if (want as u64) * weight < line {
                break;
            }
            sample.push(column.server, column.weight);
            removed[removed_count] = position;
            removed_count += 1;
            line -= weight;
            want -= 1;
            if want == 0 {
                return;
            }
        }
        let removed = &mut removed[..removed_count];
        removed.sort_unstable();
        // Systematic sampling on the line without the removed columns,
        // scaled by `want` so that every point is an integer: point j is
        // (u + j·line) / want on the line.
        let start = start_below(line);
        // Point j is (start + j·line) / want: kept as a quotient and a
        // remainder stepped by line / want, so two divisions serve every
        // point (a division costs as much as the rest of a point).
        let want = want as u64;
        let (step, step_rest) = (line / want, line % want);
        let (mut point, mut rest) = (start / want, start % want);
        for j in 0..want {
            if j > 0 {
                point += step;
                rest += step_rest;
                if rest >= want {
                    point += 1;
                    rest -= want;
                }
            }
            let mut position = point;
            // From the shortened line to the whole one: step over each
            // removed column at or before the position.
            for &gone in removed.iter() {
                let column = &self.columns[gone];
                if column.before <= position {
                    position += u64::from(column.weight);
                } else {
                    break;
                }
            }
            let column = &self.columns[self.column_at(position)];
            sample.push(column.server, column.weight);
        }
    }
}

/// A uniform integer in 0..bound (bound > 0), by Lemire's multiply-shift
/// with rejection of the biased low zone. The zone's size (2^64 mod bound)
/// is below `bound`, so the division that finds it is only needed when
/// the low half falls below `bound`: rarely, for the pool's weights.
#[inline]
fn uniform_below<R: Rng + ?Sized>(rng: &mut R, bound: u64) -> u64 {
    let mut product = u128::from(rng.next_u64()) * u128::from(bound);
    if (product as u64) < bound {
        let biased = bound.wrapping_neg() % bound;
        while (product as u64) < biased {
            product = u128::from(rng.next_u64()) * u128::from(bound);
        }
    }
    (product >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn one_list(entries: Vec<(u32, u32)>) -> (CandidateLists, ListId) {
        let mut builder = ListsBuilder::new();
        let id = builder.push(entries);
        (builder.finish(), id)
    }

    /// Servers 0, 1, ... with these weights.
    fn numbered_list(weights: &[u32]) -> (CandidateLists, ListId) {
        one_list(
            weights
                .iter()
                .enumerate()
                .map(|(i, &w)| (i as u32, w))
                .collect(),
        )
    }

    /// The inclusion probabilities πps sampling must give: min(1, k·w/W),
    /// capped servers at 1 and the others weighed again without them.
    fn expected_inclusion(weights: &[u32], k: usize) -> Vec<f64> {
        let mut probability = vec![0.0; weights.len()];
        let mut capped = vec![false; weights.len()];
        let k = k.min(weights.len());
        loop {
            let left = k - capped.iter().filter(|&&c| c).count();
            let rest: f64 = (weights.iter().zip(&capped))
                .filter(|&(_, &c)| !c)
                .map(|(&w, _)| f64::from(w))
                .sum();
            let mut changed = false;
            for (i, &w) in weights.iter().enumerate() {
                if capped[i] {
                    probability[i] = 1.0;
                    continue;
                }
                probability[i] = left as f64 * f64::from(w) / rest;
                if probability[i] >= 1.0 {
                    capped[i] = true;
                    changed = true;
                }
            }
            if !changed {
                return probability;
            }
        }
    }

    #[test]
    fn never_repeats_and_respects_want() {
        let (lists, id) = one_list((0..40).map(|i| (i, 1 + i * 100)).collect());
        let candidates = lists.get(id);
        let mut rng = SmallRng::seed_from_u64(1);
        for want in 1..=MAX_PICKS {
            for _ in 0..2_000 {
                let mut sample = Sample::new();
                candidates.draw_into(&mut rng, want, &mut sample);
                let mut ids = sample.picked().as_slice().to_vec();
                assert_eq!(ids.len(), want);
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), want);
            }
        }
    }

    #[test]
    fn takes_everything_when_there_is_not_enough() {
        let (lists, id) = one_list(vec![(5, 10), (9, 1)]);
        let candidates = lists.get(id);
        let mut rng = SmallRng::seed_from_u64(2);
        let mut sample = Sample::new();
        candidates.draw_into(&mut rng, 4, &mut sample);
        let mut ids = sample.picked().as_slice().to_vec();
        ids.sort();
        assert_eq!(ids, vec![5, 9]);
    }

    #[test]
    fn skips_servers_taken_from_another_list() {
        let (lists, id) = one_list(vec![(1, 10), (2, 10), (3, 10)]);
        let candidates = lists.get(id);
        let mut rng = SmallRng::seed_from_u64(3);
        let mut sample = Sample::new();
        sample.push(2, 10);
        sample.push(77, 5);
        candidates.draw_into(&mut rng, 4, &mut sample);
        let mut ids = sample.picked().as_slice().to_vec();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3, 77]);
    }

    #[test]
    fn a_dominant_weight_is_in_every_answer() {
        let mut weights = [1u32; 40];
        weights[7] = u32::MAX;
        for weights in [&weights[..], &[u32::MAX, 1, 1, 1, 1][..]] {
            let (lists, id) = numbered_list(weights);
            let candidates = lists.get(id);
            let mut rng = SmallRng::seed_from_u64(8);
            let heaviest = weights.iter().position(|&w| w == u32::MAX).unwrap() as u32;
            for _ in 0..1_000 {
                let mut sample = Sample::new();
                candidates.draw_into(&mut rng, 4, &mut sample);
                let mut ids = sample.picked().as_slice().to_vec();
                assert!(ids.contains(&heaviest), "{ids:?}");
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), 4);
            }
        }
    }

    /// The law, exactly: every random start on the line, one after the
    /// other, and each server is picked by `k'·w` of them (scaled: its
    /// probability k'·w/W' times the line's length W'), capped servers by
    /// all; with servers of another list excluded too.
    #[test]
    fn every_start_gives_each_server_exactly_its_inclusion_probability() {
        // (weights, addresses wanted, servers already taken: (server, weight))
        type Case<'a> = (&'a [u32], usize, &'a [(u32, u32)]);
        let cases: [Case; 7] = [
            (&[1, 2, 3, 4, 10, 80], 1, &[]),
            (&[1, 2, 3, 4, 10, 80], 2, &[]),
            (&[1, 2, 3, 4, 10, 80], 4, &[]),
            (&[5, 5, 5, 5, 5, 5, 5, 5, 5], 4, &[]),
            (
                &[7, 3, 40, 1, 1, 1, 9, 2, 2, 2, 2, 2, 6, 11, 13, 1, 1, 3, 5],
                4,
                &[],
            ),
            // Server 2 (weight 3) taken from another list, and server 99
            // (not in this list).
            (&[1, 2, 3, 4, 10, 80], 3, &[(2, 3), (99, 50)]),
            (
                &[7, 3, 40, 1, 1, 1, 9, 2, 2, 2, 2, 2, 6, 11, 13, 1, 1, 3, 5],
                3,
                &[(2, 40), (13, 11)],
            ),
        ];
        for (weights, want, taken) in cases {
            let (lists, id) = numbered_list(weights);
            let candidates = lists.get(id);
            let mut base = Sample::new();
            for &(server, weight) in taken {
                base.push(server, weight);
            }
            // The list without the servers taken.
            let kept: Vec<(usize, u32)> = (weights.iter().enumerate())
                .filter(|&(i, _)| !taken.iter().any(|&(s, _)| s as usize == i))
                .map(|(i, &w)| (i, w))
                .collect();
            let kept_weights: Vec<u32> = kept.iter().map(|&(_, w)| w).collect();
            let expected = expected_inclusion(&kept_weights, want);
            let line: u64 = (expected.iter().zip(&kept_weights))
                .filter(|&(&p, _)| p < 1.0)
                .map(|(_, &w)| u64::from(w))
                .sum();
            let mut counts = vec![0u64; weights.len()];
            for start in 0..line {
                let mut sample = base;
                candidates.draw_with_start(want, &mut sample, |l| {
                    assert_eq!(l, line);
                    start
                });
                assert_eq!(sample.len(), taken.len() + want, "{weights:?}");
                for &server in &sample.picked().as_slice()[taken.len()..] {
                    counts[server as usize] += 1;
                }
            }
            for (&(server, _), &p) in kept.iter().zip(&expected) {
                let exact = p * line as f64;
                assert!(
                    (counts[server] as f64 - exact).abs() < 1e-6,
                    "{weights:?} want {want}: server {server} picked by {} of {line} starts, expected {exact}",
                    counts[server]
                );
            }
        }
    }

    /// The check, by sampling: over lists of 1 to 16 servers, one
    /// with 40% of the weight and several under 2%, and answers of 1 to 4
    /// addresses, each server's share of all addresses handed out is
    /// within 1 percentage point of its due share (its weight share where
    /// no server is capped), and a capped server is in every answer.
    /// 100 000 answers each: a share's standard error is at most 0.16
    /// points, so 1 point is over 6 of them.
    #[test]
    fn shares_of_all_addresses_follow_the_weights() {
        const REST: [u32; 15] = [1500, 800, 300, 150, 100, 50, 50, 30, 20, 10, 10, 5, 5, 3, 2];
        let mut rng = SmallRng::seed_from_u64(17);
        for n in 1..=16usize {
            let rest = &REST[..n - 1];
            let rest_total: u32 = rest.iter().sum();
            // The first server holds 40% of the weight (all of it alone).
            let first = if n == 1 { 1000 } else { rest_total * 2 / 3 };
            let weights: Vec<u32> = std::iter::once(first).chain(rest.iter().copied()).collect();
            let (lists, id) = numbered_list(&weights);
            let candidates = lists.get(id);
            for k in 1..=4usize {
                let due = expected_inclusion(&weights, k);
                let answers = 100_000u32;
                let mut counts = vec![0u32; n];
                let mut addresses = 0u32;
                for _ in 0..answers {
                    let mut sample = Sample::new();
                    candidates.draw_into(&mut rng, k, &mut sample);
                    for &server in sample.picked().as_slice() {
                        counts[server as usize] += 1;
                        addresses += 1;
                    }
                }
                assert_eq!(addresses, answers * k.min(n) as u32);
                for (server, (&count, &p)) in counts.iter().zip(&due).enumerate() {
                    if p >= 1.0 {
                        assert_eq!(count, answers, "n {n} k {k}: capped server {server}");
                        continue;
                    }
                    let share = f64::from(count) / f64::from(addresses);
                    let due_share = p / k.min(n) as f64;
                    assert!(
                        (share - due_share).abs() < 0.01,
                        "n {n} k {k}: server {server} got {share:.4} of all addresses, due {due_share:.4}"
                    );
                    if due.iter().all(|&p| p < 1.0) {
                        let total: u32 = weights.iter().sum();
                        let weight_share = f64::from(weights[server]) / f64::from(total);
                        assert!((due_share - weight_share).abs() < 1e-9);
                    }
                }
            }
        }
    }

    /// Long lists: the guide table finds the same column as a scan.
    #[test]
    fn the_guide_finds_the_column_of_every_position() {
        let mut rng = SmallRng::seed_from_u64(6);
        for n in [17usize, 64, 1000, 3000] {
            let entries: Vec<(u32, u32)> = (0..n)
                .map(|i| {
                    let weight = if i % 97 == 0 {
                        3_000_000
                    } else {
                        rand::RngExt::random_range(&mut rng, 1..100_000)
                    };
                    (i as u32 * 3, weight)
                })
                .collect();
            let (lists, id) = one_list(entries);
            let candidates = lists.get(id);
            assert_eq!(candidates.len(), n);
            assert!(!candidates.guide.is_empty());
            let total = candidates.total_weight();
            for _ in 0..20_000 {
                let position = uniform_below(&mut rng, total);
                let scanned = (candidates.columns.iter())
                    .position(|c| c.before <= position && position < c.end())
                    .unwrap();
                assert_eq!(candidates.column_at(position), scanned, "n {n}, {position}");
            }
            for position in [0, total - 1] {
                let found = &candidates.columns[candidates.column_at(position)];
                assert!(found.before <= position && position < found.end());
            }
        }
    }

    /// Lists laid out one after another each read back whole, the empty
    /// one included, and an id from elsewhere reads as empty.
    #[test]
    fn lists_share_one_array() {
        let mut builder = ListsBuilder::new();
        let a = builder.push(vec![(7, 5), (3, 1)]);
        let empty = builder.push(Vec::new());
        let b = builder.push(vec![(1, 1 << 31), (2, 1 << 31), (9, u32::MAX)]);
        let lists = builder.finish();
        assert_eq!(empty, ListId::EMPTY);
        assert_eq!(lists.get(a).servers().collect::<Vec<_>>(), vec![7, 3]);
        assert_eq!(lists.get(a).total_weight(), 6);
        assert!(lists.get(empty).is_empty());
        assert_eq!(lists.get(b).servers().collect::<Vec<_>>(), vec![9, 1, 2]);
        assert_eq!(
            lists.get(b).total_weight(),
            (1u64 << 32) + u64::from(u32::MAX)
        );
        let elsewhere = ListId {
            start: 1000,
            len: 3,
            total_weight: 6,
        };
        assert!(lists.get(elsewhere).is_empty());
    }

    /// The shuffle leaves every server in every position equally often.
    #[test]
    fn the_shuffle_is_uniform() {
        let mut rng = SmallRng::seed_from_u64(11);
        let mut first = [0u64; 4];
        let draws = 40_000;
        for _ in 0..draws {
            let mut sample = Sample::new();
            for server in 0..4 {
                sample.push(server, 1 + server);
            }
            sample.shuffle(&mut rng);
            first[sample.picked().as_slice()[0] as usize] += 1;
            for (&server, &weight) in sample.picked().as_slice().iter().zip(&sample.weights) {
                assert_eq!(weight, 1 + server, "weights move with their servers");
            }
        }
        let expected = draws as f64 / 4.0;
        let chi_square: f64 = first
            .iter()
            .map(|&o| (o as f64 - expected).powi(2) / expected)
            .sum();
        // 3 degrees of freedom: the 99.9% quantile is 16.27.
        assert!(chi_square < 16.27, "{first:?}");
    }
}
