# tunnelgate benchmark chart: gnuplot -e "datafile='build/bench.dat'; outfile='build/bench.png'; runs=3" tools/bench.gnuplot
# datafile: one row per setup; columns 2.. are the figures in bench.sh's order:
#  2 B1 up gbps, 3 B1 down gbps, 4 B2 down gbps, 5-7 B3 lat1 p50/p99/p99.9 us,
#  8-10 B3 lat100 p50/p99/p99.9 us, 11 B4 tunnels/s, 12 B5 s/GiB, 13-14 B6 bytes/tunnel,
#  15-16 B1/B2 copied % (not drawn; 0 where not measured)
if (!exists("runs")) runs = 1
set terminal pngcairo size 1500,950 font "sans,10"
set output outfile
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set key top right
set offsets 0, 0, graph 0.1, 0
set xtics nomirror rotate by -20
set multiplot layout 2,3 title sprintf("tunnelgate benchmark (medians of %d runs): direct = no relay; *1 = one hop (tunnelgated, squid, tinyproxy); *2 = gateway -> upstream tunnelgated (sockmap)", runs)

set title "B1/B2 throughput (Gbit/s, higher is better)"
plot datafile using 2:xtic(1) title "B1 up", '' using 3 title "B1 down", '' using 4 title "B2 64 tunnels"

set title "B3 latency p99 (us, lower is better)"
plot datafile using 6:xtic(1) title "1 tunnel", '' using 9 title "100 tunnels"

set title "B3 latency p50 (us, lower is better)"
plot datafile using 5:xtic(1) title "1 tunnel", '' using 8 title "100 tunnels"

set title "B4 setup rate (tunnels/s, higher is better)"
plot datafile using 11:xtic(1) title "32 clients"

set title "B5 CPU per GiB, B1 down (whole machine s, lower is better)"
plot datafile using 12:xtic(1) title "s/GiB"

set title "B6 memory per idle tunnel (bytes, lower is better)"
plot datafile using 13:xtic(1) title "gateway RSS", '' using 14 title "kernel (all sockets)"

unset multiplot
