"""File I/O: one module per format. Every other stage reads and writes through here."""
