package core

import "fmt"

// GuardVerdict is a guard's answer about an email.
type GuardVerdict int

// The verdicts.
const (
	// GuardSend: the decision the email belongs to stands: send it.
	GuardSend GuardVerdict = iota
	// GuardDrop: the decision did not stand (e.g. the booking was not paid after all):
	// delete the email without sending it.
	GuardDrop
	// GuardWait: not decided yet: ask again later.
	GuardWait
)

func (v GuardVerdict) String() string {
	switch v {
	case GuardSend:
		return "send"
	case GuardDrop:
		return "drop"
	case GuardWait:
		return "wait"
	}
	return fmt.Sprintf("GuardVerdict(%d)", int(v))
}
