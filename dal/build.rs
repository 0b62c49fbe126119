// Re-embed migrations when a new folder appears (embed_migrations! alone misses new folders).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
