package session

import "errors"

// The SDK's error cases (ISA's Wspfwerr.h codes and the Winsock errors its
// methods return), to test with errors.Is. Errors returned by the SDK wrap
// one of these with the details of the call.
var (
	// ErrTerminating: the session, connection or action has ended or is
	// ending (FWX_E_TERMINATING).
	ErrTerminating = errors.New("session: terminating")
	// ErrInvalidArgument: a parameter is out of range or inconsistent
	// (E_INVALIDARG), such as Timeout with AllowMultiple.
	ErrInvalidArgument = errors.New("session: invalid argument")
	// ErrProtocolDenied: the policy does not allow the session's client to
	// use the protocol (FWX_E_PROTOCOL_RULES_DENIED).
	ErrProtocolDenied = errors.New("session: protocol not allowed for this client by the policy")
	// ErrAddressInUse: the requested proxy address is already in use
	// (WSAEADDRINUSE); also what a denied bind returns.
	ErrAddressInUse = errors.New("session: address already in use")
	// ErrAddressNotAvailable: the address is not one of this firewall's
	// (WSAEADDRNOTAVAIL).
	ErrAddressNotAvailable = errors.New("session: address not valid for this firewall")
	// ErrBadContext: the method may be called only while handling an event
	// that supports it (FWX_E_BAD_CONTEXT).
	ErrBadContext = errors.New("session: not called while handling a supported event")
	// ErrAlreadyEmulated: the connection is already emulated
	// (FWX_E_ALREADY_EMULATED).
	ErrAlreadyEmulated = errors.New("session: already emulated")
	// ErrNotEmulated: the connection is not emulated (FWX_E_NOT_EMULATED).
	ErrNotEmulated = errors.New("session: not emulated")
	// ErrAlreadyExists: the value was already set, such as a client
	// address given to BindForClient (ALREADY_EXISTS).
	ErrAlreadyExists = errors.New("session: already exists")
	// ErrBusy: too many pending requests (FWX_E_IS_BUSY), such as more
	// pinholes than a session may hold.
	ErrBusy = errors.New("session: too many pending requests")
	// ErrNotSupported: the operation is not supported for this object
	// (FWX_E_NOT_SUPPORTED).
	ErrNotSupported = errors.New("session: not supported")
	// ErrNotFound: the object the call is about does not exist, such as
	// a mapping of the client's for RetroactiveAllowBind (ERROR_NOT_FOUND).
	ErrNotFound = errors.New("session: not found")
	// ErrDenied: a filter denied the operation from its event handler
	// (IFWXConnection::Deny); a denied connect is refused.
	ErrDenied = errors.New("session: denied by a filter")
)
