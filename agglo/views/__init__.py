"""What a person looks at: the printed summary, the figures, the explorer page."""
