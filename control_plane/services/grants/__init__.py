"""Token grants as a handler chain: each grant is one class with can_handle/handle."""
