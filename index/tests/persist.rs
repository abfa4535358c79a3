//! Save and load: round trips, and damaged folders give errors (never panics).

mod common;

use std::fs;
use std::path::Path;

use index::{Exclude, HnswConfig, HnswIndex, Index, IndexError, LoadOptions};

const NO_VERIFY: LoadOptions = LoadOptions {
    verify_checksums: false,
    mmap_vectors: false,
};

fn saved_hnsw(tag: &str) -> (std::path::PathBuf, Index, Vec<f32>) {
    let (items, queries) = common::data(3_000, 20);
    let hnsw = HnswIndex::build(items, &HnswConfig::default(), &|_, _| {}).unwrap();
    let index = Index::Hnsw(hnsw);
    let dir = common::temp_path(tag);
    let files = index.save(&dir).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ids.bin",
            "vectors.bin",
            "bias.bin",
            "graph.bin",
            "manifest.json"
        ]
    );
    for f in &files {
        assert_eq!(fs::metadata(dir.join(&f.name)).unwrap().len(), f.size);
        assert_eq!(f.sha256.len(), 64);
    }
    (dir, index, queries)
}

fn answers(index: &Index, queries: &[f32]) -> Vec<Vec<index::Hit>> {
    let seen = [3i64, 5, 8];
    let excl: Vec<Exclude> = (0..queries.len() / index.dim())
        .map(|_| Exclude::Ids(&seen))
        .collect();
    index.search_batch(queries, 50, 80, &excl).unwrap()
}

#[test]
fn round_trip_gives_identical_answers() {
    let (dir, index, queries) = saved_hnsw("roundtrip");
    let expected = answers(&index, &queries);
    for opts in [
        LoadOptions::default(),
        NO_VERIFY,
        LoadOptions {
            verify_checksums: true,
            mmap_vectors: true,
        },
    ] {
        let loaded = Index::load(&dir, &opts).unwrap();
        assert!(matches!(loaded, Index::Hnsw(_)));
        assert_eq!(answers(&loaded, &queries), expected);
    }
    let manifest = Index::read_manifest(&dir).unwrap();
    assert_eq!(
        (manifest.kind.as_str(), manifest.items, manifest.dim),
        ("hnsw", 3_000, 32)
    );
    // saving into a non-empty folder is refused
    assert!(index.save(&dir).is_err());
    fs::remove_dir_all(&dir).unwrap();

    let (items, _) = common::data(500, 1);
    let exact = Index::Exact(index::ExactIndex::new(items).unwrap());
    let dir = common::temp_path("exact");
    fs::create_dir_all(&dir).unwrap(); // an empty folder is fine
    let files = exact.save(&dir).unwrap();
    assert_eq!(files.len(), 4);
    let loaded = Index::load(&dir, &LoadOptions::default()).unwrap();
    assert!(matches!(loaded, Index::Exact(_)));
    assert_eq!(answers(&loaded, &queries), answers(&exact, &queries));
    fs::remove_dir_all(&dir).unwrap();
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x5A;
    fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, by: u64) {
    let len = fs::metadata(path).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len - by).unwrap();
}

#[test]
fn a_flipped_byte_fails_the_checksum() {
    let (dir, _, _) = saved_hnsw("flip");
    for name in ["ids.bin", "vectors.bin", "bias.bin", "graph.bin"] {
        let copy = common::temp_path("flipcopy");
        fs::create_dir_all(&copy).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        flip_byte(&copy.join(name), 1000);
        for mmap in [false, true] {
            let opts = LoadOptions {
                verify_checksums: true,
                mmap_vectors: mmap,
            };
            match Index::load(&copy, &opts) {
                Err(IndexError::ChecksumMismatch { path, .. }) => assert!(path.ends_with(name)),
                Err(e) => panic!("{name}: unexpected error {e}"),
                Ok(_) => panic!("{name}: corrupt file loaded"),
            }
        }
        fs::remove_dir_all(&copy).unwrap();
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_or_missing_files_are_errors() {
    let (dir, _, _) = saved_hnsw("trunc");
    for name in [
        "ids.bin",
        "vectors.bin",
        "bias.bin",
        "graph.bin",
        "manifest.json",
    ] {
        let copy = common::temp_path("trunccopy");
        fs::create_dir_all(&copy).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        truncate(&copy.join(name), 7);
        for opts in [LoadOptions::default(), NO_VERIFY] {
            let err = Index::load(&copy, &opts)
                .err()
                .unwrap_or_else(|| panic!("{name} loaded"));
            assert!(matches!(err, IndexError::Corrupt { .. }), "{name}: {err}");
        }
        fs::remove_file(copy.join(name)).unwrap();
        assert!(Index::load(&copy, &LoadOptions::default()).is_err());
        fs::remove_dir_all(&copy).unwrap();
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_graph_without_verification_never_panics() {
    let (dir, _, queries) = saved_hnsw("graphfuzz");
    let graph = dir.join("graph.bin");
    let original = fs::read(&graph).unwrap();
    let mut rejected = 0;
    for step in 0..64usize {
        let mut bytes = original.clone();
        let at = (step * 7919 + 13) % bytes.len();
        bytes[at] = bytes[at].wrapping_add(97);
        fs::write(&graph, &bytes).unwrap();
        match Index::load(&dir, &NO_VERIFY) {
            Ok(index) => {
                // a link changed to another valid item: answers stay well-formed
                for hits in answers(&index, &queries) {
                    assert_eq!(hits.len(), 50);
                }
            }
            Err(_) => rejected += 1,
        }
    }
    assert!(rejected > 0);
    fs::write(&graph, &original).unwrap();
    assert!(Index::load(&dir, &LoadOptions::default()).is_ok());
    fs::remove_dir_all(&dir).unwrap();
}
