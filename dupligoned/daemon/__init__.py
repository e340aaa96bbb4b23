"""Thin shells around the services: the daemon main loop, the watcher, queue tasks, the scheduler."""
