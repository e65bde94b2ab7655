"""Instances: the lifecycle verbs, groups, claims, migration, suspends and what a passed deadline
does to an instance in flight."""
