"""Command-line front ends of litedet."""
