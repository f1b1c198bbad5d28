type t = Xenguest.handle

(* The stubs' records (ocaml/stubs/src/lib.rs and sim.rs), in the same field order. *)
type failure = { step : string; code : int; message : string }

let ok = function
  | Ok v -> v
  | Error { step; code; message } -> raise (Xenguest.Error { step; code; message })

external open_ : string -> Xenguest.handle = "stub_xenguest_sim_open"
external open_error : Xenguest.handle -> failure option = "stub_xenguest_open_error"

let create ~spec =
  let h = open_ spec in
  match open_error h with Some f -> ok (Error f) | None -> h

let handle t = t

external create_domain_ : t -> bool -> int -> int -> (int, failure) result
  = "stub_xenguest_sim_create_domain"

external destroy_domain_ : t -> int -> (unit, failure) result = "stub_xenguest_sim_destroy_domain"
external write_ : t -> string -> string -> (unit, failure) result = "stub_xenguest_sim_write"
external read_ : t -> string -> (string option, failure) result = "stub_xenguest_sim_read"

let create_domain t ?(hvm = true) ?(vcpus = 1) ~max_mem_kib () =
  ok (create_domain_ t hvm max_mem_kib vcpus)

let destroy_domain t domid = ok (destroy_domain_ t domid)
let write t path value = ok (write_ t path value)
let read t path = ok (read_ t path)

type domain = {
  tot_pages : int;
  max_pages : int;
  pages_by_order : (int * int) list;
  pages_by_node : int list;
  pod_entries : int;
  repopulated_pages : int;
}

external domain_ : t -> int -> (domain, failure) result = "stub_xenguest_sim_domain"

let domain t domid = ok (domain_ t domid)

type host = { free_pages : int; outstanding_claims : int; accounting_error : string option }

external host_ : t -> (host, failure) result = "stub_xenguest_sim_host"

let free_pages t = (ok (host_ t)).free_pages
let outstanding_claims t = (ok (host_ t)).outstanding_claims

let check_accounting t =
  match (ok (host_ t)).accounting_error with None -> Ok () | Some why -> Error why

type fault = { call : string; nth : int; fault_domid : int option; errno : int }

external inject_fault_ : t -> fault -> (unit, failure) result = "stub_xenguest_sim_inject_fault"

external fail_next_store_ : t -> string -> int -> (unit, failure) result
  = "stub_xenguest_sim_fail_next_store"

external inject_panic_ : t -> string -> (unit, failure) result = "stub_xenguest_sim_inject_panic"

external set_call_latency_ : t -> int -> (unit, failure) result
  = "stub_xenguest_sim_set_call_latency"

let inject_fault t ~call ?(nth = 1) ?domid ~errno () =
  ok (inject_fault_ t { call; nth; fault_domid = domid; errno })

let fail_next_store t ~op ~errno = ok (fail_next_store_ t op errno)
let inject_panic t ~op = ok (inject_panic_ t op)
let set_call_latency t ~us = ok (set_call_latency_ t us)
