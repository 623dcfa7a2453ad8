//! The conformance suite on the memory store.

async fn fresh_store() -> neighborbid_core::MemoryStore {
    neighborbid_core::MemoryStore::new()
}

neighborbid_core::conformance_tests!(fresh_store);
