//! The fuzz targets' smoke run, part of the normal test suite: every target gets its seed
//! corpus (`corpus/<target>/`), the inputs of crashes found before (`regressions/<target>/`),
//! and a fixed number of deterministic mutations of its seeds. Real campaigns run under AFL++
//! (`scripts/fuzz.sh TARGET SECONDS`); this only proves each target runs and that no
//! recorded crash came back.

use std::path::{Path, PathBuf};

use alga_edge_fuzz::{TARGETS, Target, target};

/// Tokens the mutator splices in: the syntax the targets' formats are made of.
const TOKENS: [&[u8]; 14] = [
    b"..",
    b"%2e",
    b"%2F",
    b"/",
    b"\\",
    b"\0",
    b"\"",
    b"{}",
    b"[]",
    b":",
    b"\n",
    b"-",
    b"=",
    b"ffffffffffffffff",
];

/// A small deterministic generator (xorshift64*), so a failure reproduces.
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

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("a readable folder").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("a readable file");
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

fn insert(input: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let tail = input.split_off(at);
    input.extend_from_slice(bytes);
    input.extend(tail);
}

/// One mutation of `input` (AFL's havoc in miniature), `other` for splicing.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let at = rng.below(input.len() + 1);
    let byte = at.min(input.len().saturating_sub(1));
    match rng.below(7) {
        0 if !input.is_empty() => input[byte] ^= 1 << rng.below(8),
        1 if !input.is_empty() => input[byte] = rng.next() as u8,
        2 => input.insert(at, rng.next() as u8),
        3 if !input.is_empty() => {
            let end = (at + 1 + rng.below(8)).min(input.len());
            input.drain(at.min(end)..end);
        }
        4 => {
            let token = TOKENS[rng.below(TOKENS.len())];
            insert(input, at, token);
        }
        5 if !input.is_empty() => {
            let start = rng.below(input.len());
            let end = (start + 1 + rng.below(16)).min(input.len());
            let copy = input[start..end].to_vec();
            insert(input, at, &copy);
        }
        _ if !other.is_empty() => {
            let from = rng.below(other.len());
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
        _ => input.push(rng.next() as u8),
    }
}

/// Seeds, regressions, then `mutations` mutated seeds through `name`.
fn smoke(name: &str, mutations: usize) {
    let Target { run, .. } = target(name).expect("a listed target");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = files(&root.join("corpus").join(name));
    assert!(!seeds.is_empty(), "target {name} has no seed corpus");
    for (path, bytes) in seeds
        .iter()
        .chain(&files(&root.join("regressions").join(name)))
    {
        eprintln!("{name}: {}", path.display());
        run(bytes);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for i in 0..mutations {
        let mut input = seeds[rng.below(seeds.len())].1.clone();
        let other = &seeds[rng.below(seeds.len())].1;
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut input, other);
        }
        if std::panic::catch_unwind(|| run(&input)).is_err() {
            panic!("{name}: mutation {i} failed; its input: {input:?}");
        }
    }
    eprintln!(
        "{name}: {} seeds and {mutations} mutations passed",
        seeds.len()
    );
}

macro_rules! smoke_tests {
    ($($name:ident: $count:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                smoke(stringify!($name), $count);
            }
        )*

        #[test]
        fn every_target_has_a_smoke_test() {
            let tested = [$(stringify!($name)),*];
            for t in TARGETS {
                assert!(tested.contains(&t.name), "no smoke test for {}", t.name);
            }
        }
    };
}

smoke_tests! {
    manifest: 10_000,
    bundle: 5_000,
    ui: 20_000,
    headers: 20_000,
    tenant_token: 10_000,
    runner_envelope: 10_000,
    kv: 1_000,
    abi: 10_000,
}
