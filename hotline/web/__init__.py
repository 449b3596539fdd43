"""The services' HTTP plumbing: a versioned API declared with pydantic models (api.py), and who is asking (security.py)."""
from .api import Api, ApiError, Endpoint, Request, error_response

__all__ = ['Api', 'ApiError', 'Endpoint', 'Request', 'error_response']
