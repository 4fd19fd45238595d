package protocol

import (
	"errors"
	"strings"
)

// MaxChannelLen is the longest channel name accepted.
const MaxChannelLen = 128

// PersonalPrefix starts the name of a user's personal channel: "#alice"
// carries what is published to user alice. Clients cannot name such a
// channel except their own.
const PersonalPrefix = "#"

// The naming rules, as told to clients and API callers.
const (
	ChannelNameRule = "channel names are 1-128 characters of A-Z a-z 0-9 _ - . : @ + ="
	UserNameRule    = "user names are 1-127 characters of A-Z a-z 0-9 _ - . : @ + ="
)

// Channel name errors.
var (
	ErrChannelName = errors.New("protocol: " + ChannelNameRule)
	ErrPattern     = errors.New("protocol: a channel pattern is a channel name, optionally ending in *")
	ErrUserName    = errors.New("protocol: " + UserNameRule)
)

// nameChar reports the bytes allowed in channel and user names. None of
// them needs escaping in JSON or in a URL query, so names are copied into
// frames as they are.
var nameChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_-.:@+=" {
		t[c] = true
	}
	return t
}()

func validName(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameChar[s[i]] {
			return false
		}
	}
	return true
}

// ValidChannel reports whether name is a channel a client may name: a
// public channel, not a personal one.
func ValidChannel(name string) bool { return validName(name, MaxChannelLen) }

// ValidUser reports whether name can be a user (a token's sub), so that
// PersonalChannel(name) is a valid name.
func ValidUser(name string) bool { return validName(name, MaxChannelLen-len(PersonalPrefix)) }

// ValidName reports whether name is a public or a personal channel.
func ValidName(name string) bool {
	if user, ok := Personal(name); ok {
		return ValidUser(user)
	}
	return ValidChannel(name)
}

// PersonalChannel is the channel that carries what is published to user.
func PersonalChannel(user string) string { return PersonalPrefix + user }

// Personal reports whether channel is a personal channel, and whose.
func Personal(channel string) (user string, ok bool) {
	return strings.CutPrefix(channel, PersonalPrefix)
}

// Patterns is a set of channel patterns: a pattern is a channel name, which
// matches itself, or a prefix ending in "*", which matches every channel
// that starts with the prefix ("chat:*"). A lone "*" matches every public
// channel. Personal channels never match a pattern.
type Patterns []string

// ParsePatterns parses a comma-separated list of patterns; spaces around
// items are ignored and empty items skipped.
func ParsePatterns(list string) (Patterns, error) {
	var p Patterns
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if err := CheckPattern(item); err != nil {
			return nil, err
		}
		p = append(p, item)
	}
	return p, nil
}

// CheckPattern returns ErrPattern unless p is a valid pattern.
func CheckPattern(p string) error {
	prefix, wild := strings.CutSuffix(p, "*")
	if wild && prefix == "" {
		return nil
	}
	if !validName(prefix, MaxChannelLen) {
		return ErrPattern
	}
	return nil
}

// Match reports whether any pattern matches channel.
func (p Patterns) Match(channel string) bool {
	if strings.HasPrefix(channel, PersonalPrefix) {
		return false
	}
	for _, pat := range p {
		if prefix, wild := strings.CutSuffix(pat, "*"); wild {
			if strings.HasPrefix(channel, prefix) {
				return true
			}
		} else if pat == channel {
			return true
		}
	}
	return false
}
