//! Helpers shared by the registry's integration tests.
#![allow(dead_code)]

use std::io::Write;

/// A tar entry built by hand, so tests can write what `tar::Builder` refuses to (`..`, links).
pub struct RawEntry {
    pub path: Vec<u8>,
    pub kind: u8,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
}

pub fn entry(path: &str, kind: u8, data: &[u8]) -> RawEntry {
    RawEntry {
        path: path.as_bytes().to_vec(),
        kind,
        data: data.to_vec(),
        link: Vec::new(),
    }
}

pub fn raw_archive(entries: &[RawEntry]) -> Vec<u8> {
    let mut tar = Vec::new();
    for e in entries {
        let mut header = [0u8; 512];
        header[..e.path.len()].copy_from_slice(&e.path);
        header[100..107].copy_from_slice(b"0000644");
        header[108..115].copy_from_slice(b"0000000");
        header[116..123].copy_from_slice(b"0000000");
        header[124..135].copy_from_slice(format!("{:011o}", e.data.len()).as_bytes());
        header[136..147].copy_from_slice(b"00000000000");
        header[156] = e.kind;
        header[157..157 + e.link.len()].copy_from_slice(&e.link);
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| b as u32).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        tar.extend_from_slice(&header);
        tar.extend_from_slice(&e.data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut encoder = zstd::Encoder::new(Vec::new(), 3).unwrap();
    encoder.write_all(&tar).unwrap();
    encoder.finish().unwrap()
}
