//! A bounded, deterministic fuzz run of the loader's checks, for every CI run: the corpus in
//! `fuzz/corpus/loader/` (real guests and crafted cases) is replayed, then mutated with
//! truncations, byte flips and hostile field values (huge counts, overflowing offsets and
//! sizes, misaligned notes). Every input must give `Ok` or an error, never a panic.
//! The open-ended version is the cargo-fuzz target in `fuzz/`.

use std::path::PathBuf;

use nabla_tender::tender::inspect_bytes;

const MEM: u64 = 512 << 20;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/loader");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Offsets worth hitting: the ELF header, the program headers and the start of each segment.
fn hot_offsets(data: &[u8]) -> Vec<usize> {
    let mut v: Vec<usize> = (0..64.min(data.len())).collect();
    if data.len() >= 64 {
        let phoff = u64::from_le_bytes(data[32..40].try_into().unwrap()) as usize;
        let phnum = u16::from_le_bytes(data[56..58].try_into().unwrap()) as usize;
        for i in 0..phnum.min(64) {
            let base = phoff.saturating_add(i * 56);
            if base + 56 <= data.len() {
                v.extend(base..base + 56);
                let off = u64::from_le_bytes(data[base + 8..base + 16].try_into().unwrap());
                if let Some(o) = usize::try_from(off).ok().filter(|o| *o < data.len()) {
                    v.extend(o..(o + 128).min(data.len()));
                }
            }
        }
    }
    v
}

fn mutate(rng: &mut Rng, seed: &[u8], hot: &[usize]) -> Vec<u8> {
    let mut d = seed.to_vec();
    let interesting: [u64; 12] = [
        0,
        1,
        8,
        0x1000,
        0x10_0000,
        0x7fff_ffff,
        0xffff_ffff,
        u64::MAX,
        u64::MAX - 0xfff,
        seed.len() as u64,
        MEM,
        1 << 47,
    ];
    for _ in 0..1 + rng.below(4) {
        let at = if !hot.is_empty() && rng.below(4) != 0 {
            hot[rng.below(hot.len())]
        } else {
            rng.below(d.len())
        };
        match rng.below(6) {
            0 => d.truncate(rng.below(d.len())),
            1 => {
                if at < d.len() {
                    d[at] ^= 1 << rng.below(8);
                }
            }
            2 | 3 => {
                let width = [2usize, 4, 8][rng.below(3)];
                let val = if rng.below(2) == 0 {
                    interesting[rng.below(interesting.len())]
                } else {
                    rng.next()
                };
                if at + width <= d.len() {
                    d[at..at + width].copy_from_slice(&val.to_le_bytes()[..width]);
                }
            }
            4 => {
                if at < d.len() {
                    d[at] = rng.next() as u8;
                }
            }
            _ => {
                // A name without its NUL, or a misaligned note: shift a window by a few bytes.
                let n = 1 + rng.below(7);
                if at + n + 32 <= d.len() {
                    d.copy_within(at..at + 32, at + n);
                }
            }
        }
        if d.is_empty() {
            break;
        }
    }
    d
}

#[test]
fn corpus_replays_without_panic() {
    let c = corpus();
    assert!(!c.is_empty(), "the loader corpus is empty");
    for (name, data) in &c {
        let r = inspect_bytes(data, MEM);
        if name.starts_with("guest-") {
            assert!(
                r.is_ok(),
                "{name} is a valid guest but was refused: {:?}",
                r.err()
            );
        }
    }
}

#[test]
fn mutations_never_panic() {
    let iterations: usize = std::env::var("NABLA_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut rng = Rng(0x6e61_626c_6121);
    let mut refused = 0usize;
    let mut total = 0usize;
    for (name, seed) in corpus() {
        let hot = hot_offsets(&seed);
        for i in 0..iterations {
            let input = mutate(&mut rng, &seed, &hot);
            let outcome = std::panic::catch_unwind(|| inspect_bytes(&input, MEM).is_err());
            match outcome {
                Ok(err) => refused += usize::from(err),
                Err(_) => {
                    let path = std::env::temp_dir().join(format!("nabla-loader-crash-{name}-{i}"));
                    std::fs::write(&path, &input).unwrap();
                    panic!(
                        "the loader panicked on a mutation of {name}; input saved to {}",
                        path.display()
                    );
                }
            }
            total += 1;
        }
    }
    println!("{total} mutated inputs, {refused} refused with an error, none panicked");
}
