// Package filters will hold filter registration and the data-filter
// plumbing of fwx's filter SDK, with one package per application filter
// below it (filters/ftp, ...).
//
// It is empty until the SDK lands (issue 3): today every flow takes the fast
// path.
package filters
