"""Python client for authq: authentication over RabbitMQ (PROTOCOL.md is the contract).

    from authq_client import AuthqClient
    client = AuthqClient("amqp://guest:guest@127.0.0.1:5672/%2f")
    reg = client.register("ann@example.com")
    client.confirm_registration("ann@example.com", reg.code, "correct horse battery")
    print(client.check(client.login("ann@example.com", "correct horse battery").session).user.email)
"""

from .client import PROTOCOL_VERSION, AuthqClient
from .errors import (
    AuthqError,
    AuthqTimeoutError,
    ConnectError,
    ConnectionLostError,
    NoDeploymentError,
    OverloadedError,
    ServerError,
    UnroutableError,
)
from .types import (
    ChangePasswordResult,
    CheckResult,
    CompleteResetResult,
    ConfirmRegistrationResult,
    DeleteUserResult,
    DeletionStatus,
    JwksResult,
    LinkSocialResult,
    ListSessionsResult,
    LoginResult,
    LogoutAllResult,
    MfaConfirmResult,
    MfaEnrollResult,
    ProfileResult,
    RefreshResult,
    RegisterResult,
    ServiceClientListResult,
    ServiceClientResult,
    ServiceTokenResult,
    SessionSummary,
    SocialLoginResult,
    SocialUrlResult,
    StartResetResult,
    User,
    UserStateResult,
)

from .verify import TokenRefused, verify_access_token

__all__ = [
    "TokenRefused",
    "verify_access_token",
    "PROTOCOL_VERSION",
    "AuthqClient",
    "AuthqError",
    "AuthqTimeoutError",
    "ConnectError",
    "ConnectionLostError",
    "NoDeploymentError",
    "OverloadedError",
    "ServerError",
    "UnroutableError",
    "ChangePasswordResult",
    "CheckResult",
    "CompleteResetResult",
    "ConfirmRegistrationResult",
    "DeleteUserResult",
    "DeletionStatus",
    "JwksResult",
    "LinkSocialResult",
    "ListSessionsResult",
    "LoginResult",
    "LogoutAllResult",
    "MfaConfirmResult",
    "MfaEnrollResult",
    "ProfileResult",
    "RefreshResult",
    "RegisterResult",
    "ServiceClientListResult",
    "ServiceClientResult",
    "ServiceTokenResult",
    "SessionSummary",
    "SocialLoginResult",
    "SocialUrlResult",
    "StartResetResult",
    "User",
    "UserStateResult",
]
