"""Invitations to join a salon in a role, with object-level permissions and real-time updates."""

__version__ = "0.1.0.dev0"
