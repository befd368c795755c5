use std::time::Duration;
fn main() -> anyhow::Result<()> {
    let offsets = sensor::btf::KernelOffsets::from_file(std::path::Path::new(sensor::btf::VMLINUX_BTF))?;
    println!("{offsets:?}");
    let opts = sensor::loader::LoadOptions { ring_buffer_bytes: 1<<20, watched_max: 1024, read_aggregates_max: 1024, pending_max: 1024, read_flush_interval_ns: 10_000_000_000 };
    let mut s = sensor::loader::Sensor::load(&offsets, &opts)?;
    s.attach_all()?;
    println!("attached {}", s.attached);
    std::thread::sleep(Duration::from_secs(1));
    Ok(())
}
