"""Command-line entry points: parse arguments, call one library function, print the result."""
