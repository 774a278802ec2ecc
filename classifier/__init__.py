"""Message classifier: text preparation, language detection, category model and its lifecycle."""
