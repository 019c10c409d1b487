"""State that lives in tasks: keyed state (``self.state`` in bolts), organised by key group."""
