(* xenguest-ocaml: builds done in-process by the OCaml module on the real host
   (Xenguest.interface_open), as xenopsd will call it, for the e2e test toolstack.

   xenguest-ocaml ARGV...: one build from the binary's own argv, through
   Xenguest.build_of_argv (the binary's parser): the result line goes to -controloutfd, the
   build's log lines and any error to stderr, exit status 1 on an error.

   xenguest-ocaml -serve: a long-lived process, as xenopsd is. Each stdin line is
   "ID<TAB>word<TAB>word..." (one argv); each is built on its own thread, on one shared handle,
   and answered on stdout with "ID<TAB>result:<frames><TAB><core us>" or
   "ID<TAB>error:<text>", in the order the builds finish. EOF: wait for every build, exit. *)

let log_to_stderr domid _level text = Printf.eprintf "xenguest-ocaml[%s]: %s\n%!" domid text

let domid_of argv =
  let rec go = function "-domid" :: d :: _ -> d | _ :: rest -> go rest | [] -> "?" in
  go argv

let build h argv = Xenguest.build_of_argv ~log:(log_to_stderr (domid_of argv)) h argv

let frames (r : Xenguest.built) =
  Printf.sprintf "%nd %nd%s" r.store_mfn r.console_mfn
    (match r.protocol with Some p -> " " ^ p | None -> "")

let one argv =
  match
    let h = Xenguest.interface_open () in
    Fun.protect ~finally:(fun () -> Xenguest.close h) (fun () -> build h argv)
  with
  | r, report ->
      Printf.eprintf "xenguest-ocaml: built domain %s in %d us, %d populate calls\n%!"
        (domid_of argv) report.Xenguest.elapsed_us report.populate_calls;
      let line = "result:" ^ frames r ^ "\n" in
      let rec fd = function "-controloutfd" :: fd :: _ -> Some fd | _ :: rest -> fd rest | [] -> None in
      (match fd argv with
      | Some fd ->
          (* The inherited pipe, opened again through procfs (OCaml has no fdopen). *)
          let oc = open_out ("/proc/self/fd/" ^ fd) in
          output_string oc line;
          close_out oc
      | None -> print_string line)
  | exception Xenguest.Error { message; _ } ->
      prerr_endline ("error:" ^ message);
      exit 1

let serve () =
  let h = Xenguest.interface_open () in
  let out = Mutex.create () in
  let answer id text =
    Mutex.lock out;
    Printf.printf "%s\t%s\n%!" id text;
    Mutex.unlock out
  in
  let run line =
    match String.split_on_char '\t' line with
    | id :: argv -> (
        match build h argv with
        | r, (report : Xenguest.report) ->
            answer id
              (Printf.sprintf
                 "result:%s\tcore_us=%d\thypervisor_us=%d\txenstore_us=%d\timages_us=%d\town_us=%d"
                 (frames r) report.elapsed_us report.hypervisor_us report.xenstore_us
                 report.images_us report.own_us)
        | exception Xenguest.Error { message; _ } -> answer id ("error:" ^ message)
        | exception e -> answer id ("error:" ^ Printexc.to_string e))
    | [] -> ()
  in
  let rec loop threads =
    match input_line stdin with
    | line -> loop (Thread.create run line :: threads)
    | exception End_of_file -> List.iter Thread.join threads
  in
  loop [];
  Xenguest.close h

let () =
  match List.tl (Array.to_list Sys.argv) with
  | [ "-serve" ] -> serve ()
  | argv -> one argv
