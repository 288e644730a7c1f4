-- Argo CD actions of a modelops.io ChampionChallenger: which ones the current phase allows
-- (docs/gitops.md). argocd-cm key: resource.customizations.actions.modelops.io_ChampionChallenger
-- The same rules as `kubectl modelops`: approve while AwaitingApproval, promote (forced) and
-- rollback while a challenge is gated (Progressing or AwaitingApproval), pause or resume by
-- spec.paused. Lua 5.1 without the string library, as Argo CD runs it.
local status = obj.status or {}
local phase = status.phase or "Idle"
local challenge = (status.machine or {}).challengeId
local running = challenge ~= nil and challenge ~= ""
local gated = running and (phase == "Progressing" or phase == "AwaitingApproval")
local paused = obj.spec ~= nil and obj.spec.paused == true

local actions = {}
actions["approve"] = {
  disabled = not (running and phase == "AwaitingApproval"),
  displayName = "approve the challenger",
}
actions["promote"] = {disabled = not gated, displayName = "promote now (skips the gates)"}
actions["rollback"] = {disabled = not gated, displayName = "roll the challenger back"}
actions["pause"] = {disabled = paused, displayName = "pause (spec.paused)"}
actions["resume"] = {disabled = not paused, displayName = "resume (spec.paused)"}
return actions
