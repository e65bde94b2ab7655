"""Accounts: users, logins and bearer tokens, password hashes, failed-login throttling."""
