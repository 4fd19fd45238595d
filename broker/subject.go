package broker

import "strings"

// Channel names may hold '.', which separates NATS subject tokens; it is
// written as '%', which channel names never hold, so each channel is one
// token under the stream's prefix.
func subjectFor(prefix, channel string) string {
	return prefix + strings.ReplaceAll(channel, ".", "%")
}

func channelOf(prefix, subject string) (string, bool) {
	token, ok := strings.CutPrefix(subject, prefix)
	if !ok || token == "" || strings.Contains(token, ".") {
		return "", false
	}
	return strings.ReplaceAll(token, "%", "."), true
}
