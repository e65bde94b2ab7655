"""Tests of the store contract over every implementation, the SQL engine and the migrations."""
