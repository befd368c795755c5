fn main() { println!("{}", sensor::ebpf::OBJECT.len()); }
