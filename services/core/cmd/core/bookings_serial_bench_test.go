package main

import (
	"encoding/json"
	"testing"
)

// BenchmarkBookingSerial: 500 POST /bookings (one seat each, on a 2,000-seat show), then their
// 500 POST /payments, one request at a time after a warm-up of 16: the latency of a lone
// request, which is what an extra round trip on the write path costs (p50, p99).
func BenchmarkBookingSerial(b *testing.B) {
	s := startBench(b, nil)
	const n = 500
	toks := s.customers(b, 16)
	for b.Loop() {
		f := s.show(b, 2000, 50)
		runLoad(16, 1, func(i int) int {
			code, _ := s.rc.do("POST", base+"/bookings", toks[i], f.booking(1), nil)
			return code
		})
		ids, costs := make([]string, n), make([]float64, n)
		st := runLoad(n, 1, func(i int) int {
			code, raw := s.rc.do("POST", base+"/bookings", toks[i%16], f.booking(1), nil)
			var env struct {
				Data struct {
					ID        string  `json:"_id"`
					TotalCost float64 `json:"totalCost"`
				} `json:"data"`
			}
			_ = json.Unmarshal(raw, &env)
			ids[i], costs[i] = env.Data.ID, env.Data.TotalCost
			return code
		})
		if st.statuses[201] != n {
			b.Fatalf("bookings: %v", st)
		}
		st.report(b, "book-")
		st = runLoad(n, 1, func(i int) int {
			code, _ := s.rc.do("POST", base+"/payments", toks[i%16], map[string]any{"bookingId": ids[i], "amount": costs[i]}, nil)
			return code
		})
		if st.statuses[200] != n {
			b.Fatalf("payments: %v", st)
		}
		st.report(b, "pay-")
	}
}
