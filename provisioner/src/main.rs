fn main() {
    eprintln!("spotwright-provisioner: not wired yet");
    std::process::exit(2);
}
