"""Hardware tests run only on the board; elsewhere each test says what it is missing."""
