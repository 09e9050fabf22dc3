//! Parser tests on real runner output captured on this machine (tests/data/runners/, see its
//! capture.sh), one file per parser.

mod gotest;
mod junit;
mod libtest;
mod props;
mod pytest;
mod runner;
mod tap;

/// A captured runner output, by file name.
pub(crate) fn data(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/runners").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
