// Package logq keeps a log from ever stopping the program that writes it:
// records pass through a bounded queue to a goroutine of their own, which
// writes them to the real destination ([Writer]); and a log file can be
// reopened and rotated by size while it is written ([File]).
//
// fwx writes its firewall log from the packet path. A reader that stops
// reading (a pipe nobody drains, a full disk, a hung terminal) must cost
// log records, never forwarding: when the queue is full, records are
// dropped and counted, and a later record says how many.
package logq
