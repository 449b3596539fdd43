"""Sign-in, roles and the audit trail, shared by the CTI (its API and pages) and the ACD (its API)."""
from .audit import AuditLog
from .limits import SignInLimiter
from .passwords import PasswordError, check_password_rules, generate_password
from .roles import Principal, Role, valid_username
from .sessions import IssuedTokens, SessionStore
from .user import User
from .users import UserError, UserStore

__all__ = ["AuditLog", "IssuedTokens", "PasswordError", "Principal", "Role", "SessionStore", "SignInLimiter", "User",
           "UserError", "UserStore", "check_password_rules", "generate_password", "valid_username"]
