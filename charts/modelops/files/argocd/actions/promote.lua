-- Argo CD action "promote" of a modelops.io ChampionChallenger (docs/gitops.md): what
-- `kubectl modelops promote --force` does, a promotion that skips the gates. The order names
-- the running challenge (status.machine.challengeId), so it is never carried out on a later
-- one; it waits until the challenger serves.
-- The modelops-approvals admission policy accepts it only when modelops.io/command-by is the
-- requesting user, and Argo CD sends the request as its own account: the chart value
-- gitops.argocd.serviceAccount replaces the name below (or edit it when copying by hand).
local argocd_user = "system:serviceaccount:argocd:argocd-server"

local status = obj.status or {}
local phase = status.phase or "Idle"
local challenge = (status.machine or {}).challengeId
local gated = phase == "Progressing" or phase == "AwaitingApproval"
if challenge == nil or challenge == "" or not gated then
  error("no challenge to promote: " .. obj.metadata.name .. " is " .. phase, 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["modelops.io/command"] = "promote/" .. challenge
obj.metadata.annotations["modelops.io/command-by"] = argocd_user
return obj
